"""Renderers of results: terminal.py (the text a person reads in a terminal,
and the live progress line) and html.py (one self-contained HTML file, with
its charts drawn by svg.py and its style and script in html_assets.py)."""
