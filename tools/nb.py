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
    return f'''# Set-up (the same in every chapter): install the book's package, with everything the
# chapters import, when it is missing (Colab, a fresh kernel); then seed and pick the device.
# Colab keeps its own Python (3.11+ is needed) and CUDA build of torch (2.4+ is enough); a T4
# has no bf16, so training there autocasts to fp16 with a gradient scaler (autocast_dtype).
try:
    import transformer_book
except ImportError:
    import importlib, subprocess, sys
    url = "git+{repository_url()}.git"
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           f"transformer_book[book] @ {{url}}"])
    importlib.invalidate_caches()
    import transformer_book
from transformer_book import setup
device = setup(seed=0)'''


def refresh_first_cells(paths=None) -> list[Path]:
    """Replace the first cell of every notebook in book/ (or of ``paths``) with the standard one;
    returns the notebooks that changed. ``python -m tools.nb`` runs it."""
    changed = []
    for path in paths or sorted((ROOT / "book").glob("*.ipynb")):
        path = Path(path)
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0]
        if first.cell_type != "code" or "remove-cell" not in first.metadata.get("tags", []):
            raise ValueError(f"{path.name}: the first cell is not the standard set-up cell")
        if first.source != first_cell_source():
            first.source = first_cell_source()
            nbformat.validate(nb)
            path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
            changed.append(path)
    return changed


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


if __name__ == "__main__":
    for changed in refresh_first_cells():
        print("first cell refreshed:", changed.relative_to(ROOT))
