"""Serve MathJax 3 from the built book itself, so math renders with no network.

The MathJax files come from the PyPI package ``sphinx-mathjax-offline`` (installed by
requirements.txt). That package installs under a hyphenated folder name Sphinx cannot import as
an extension, so this small extension locates its files and copies them into ``_static``.
Nothing of MathJax is committed to this repository.
"""
from importlib import metadata
from pathlib import Path

from sphinx.util.fileutil import copy_asset

MATHJAX_PATH = "mathjax/tex-chtml.js"


def mathjax_dir() -> Path:
    dist = metadata.distribution("sphinx-mathjax-offline")
    path = Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))
    if not (path / "tex-chtml.js").exists():
        raise RuntimeError(f"MathJax not found at {path}; pip install sphinx-mathjax-offline")
    return path


def _copy(app, exc):
    if exc is None and app.builder.format == "html":
        copy_asset(str(mathjax_dir()), str(Path(app.outdir) / "_static" / "mathjax"))


def setup(app):
    mathjax_dir()  # fail early, with a clear message, if the package is missing
    app.config.mathjax_path = MATHJAX_PATH
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
