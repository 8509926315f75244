"""Write a chapter notebook from a list of cells, with the book's standard first cell.

Chapters are authored as Python scripts that call ``write_notebook`` (keeps diffs readable and
the first cell identical everywhere). Outputs are never stored: the build and Colab execute.

    from tools.nb import write_notebook, md, code
    write_notebook("book/02_self_attention.ipynb", [md("# Title"), code("x = 1", tags=["hide-input"])])
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def repository_url() -> str:
    """The repository URL in _config.yml (the first cell installs from it)."""
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, flags=re.M)
    if not m:
        raise ValueError("_config.yml has no repository.url")
    return m.group(1)


def first_cell_source() -> str:
    return f'''# Set-up (the same in every chapter): install the book's package if it is missing
# (Colab, a fresh kernel), then seed everything and pick the device (cuda, mps or cpu).
try:
    import transformer_book
except ImportError:
    import subprocess, sys
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "git+{repository_url()}.git"])
    import transformer_book
from transformer_book.utils import setup
device = setup(seed=0)'''


def md(source: str, tags=()):
    cell = nbformat.v4.new_markdown_cell(source.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def code(source: str, tags=()):
    cell = nbformat.v4.new_code_cell(source.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def write_notebook(path, cells) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [code(first_cell_source(), tags=["remove-cell"])] + list(cells)
    for i, c in enumerate(nb.cells):  # stable ids keep diffs clean
        c["id"] = f"cell-{i:03d}"
    path = ROOT / path
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
