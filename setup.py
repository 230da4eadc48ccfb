"""Build the C engine (refhound._core) and the bundled demo extension.

Everything else about the package lives in pyproject.toml.  The engine is
one extension built from every file in src/core; optional system libraries
are detected here and switched on with HAVE_* macros.
"""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CFLAGS = ["-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra",
          "-Wno-unused-parameter", "-Wno-missing-field-initializers",
          "-std=gnu11"]

core_sources = sorted(glob.glob("src/core/*.c"))

setup(
    ext_modules=[
        Extension(
            "refhound._core",
            sources=core_sources,
            include_dirs=["src/core", "include"],
            define_macros=[("REFHOUND_CORE_BUILD", "1")],
            extra_compile_args=CFLAGS,
            libraries=["pthread"],
        ),
        Extension(
            "refhound._demo",
            sources=["src/demo/demo.c"],
            extra_compile_args=["-O0", "-g"],
        ),
    ],
)
