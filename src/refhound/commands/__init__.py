"""One module per `refhound` command; see refhound.cli."""
