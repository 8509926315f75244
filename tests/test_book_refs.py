"""Cross-references between pages: the glossary and the notation page name only chapters that
exist, and no chapter refers to one that does not ("chapter 14", a link to 14_x.ipynb).

A chapter exists when _toc.yml lists book/NN_name and the file is there; the list is derived
from those two, never typed here, so adding a chapter needs no change to this test."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

# Chapters written on another branch at the same time, which pages may already name. The
# allowance applies only while the file is missing; once the chapter is merged it is checked as
# any other. Empty while no chapter is being written elsewhere.
PENDING: dict[int, str] = {}


def toc_chapters() -> dict[int, str]:
    """{number: stem} of every book/NN_name in _toc.yml whose .ipynb or .md exists."""
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    found = {}
    for entry in re.findall(r"(?:file|root):\s*book/(\d\d)_(\S+)", toc):
        stem = f"{entry[0]}_{entry[1]}"
        if any((BOOK / f"{stem}{ext}").exists() for ext in (".ipynb", ".md")):
            found[int(entry[0])] = stem
    return found


def known_chapters() -> dict[int, str]:
    found = toc_chapters()
    for n, stem in PENDING.items():
        found.setdefault(n, stem)
    return found


def page_texts():
    """(page name, text) for every notebook (markdown and code cells) and markdown page."""
    for path in sorted(BOOK.glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        yield path.name, "\n".join("".join(c["source"]) for c in cells)
    for path in sorted(BOOK.glob("*.md")):
        yield path.name, path.read_text(encoding="utf-8")


# "chapter 6", "Chapters 8 and 9", "chapters 3, 4 and 5", "chapters 6 to 11", "(ch. 8, 10)"
CHAPTER_REF = re.compile(
    r"\b(?:[Cc]hapters?|ch\.)\s+(\d+(?:(?:\s*,\s*|\s+and\s+|\s+to\s+|\s*-\s*|\s+or\s+)\d+)*)")
# a page name such as 06_transformer or 12_efficiency.ipynb in a link or a {doc} role
# a page name, alone or as a link to its .ipynb/.md/.html, not a data file's name (08_x.json)
PAGE_REF = re.compile(r"(?<![\w/.-])(\d\d)_([a-z][a-z0-9_]*)(?!\w|\.(?!(?:ipynb|md|html)\b)\w)")


def referenced_chapters(text: str) -> set[int]:
    return {int(n) for m in CHAPTER_REF.finditer(text) for n in re.findall(r"\d+", m.group(1))}


def test_the_chapter_list_is_derived_from_the_toc_and_the_files():
    chapters = toc_chapters()
    stems = {p.stem for p in BOOK.glob("[0-9][0-9]_*.ipynb")}
    assert set(chapters.values()) == stems  # every chapter file listed, every listed file there
    assert 0 in chapters and 13 in chapters


def test_the_reference_patterns_find_what_they_should():
    text = ("see chapter 6, Chapters 8 and 9, chapters 3, 4 and 5, chapters 6 to 11, "
            "(ch. 8, 10), [the link](06_transformer.ipynb)")
    assert referenced_chapters(text) == {3, 4, 5, 6, 8, 9, 10, 11}
    assert {m.group(1) for m in PAGE_REF.finditer(text)} == {"06"}
    assert not list(PAGE_REF.finditer("results in 08_gpt_finetune.json"))
    assert [m.group(2) for m in PAGE_REF.finditer("10_gpt2.md and 11_t5")] == ["gpt2", "t5"]
    assert referenced_chapters("chapter 14") == {14} and not referenced_chapters("the 14 heads")


@pytest.mark.parametrize("name,text", list(page_texts()), ids=lambda x: x if len(x) < 40 else "")
def test_every_chapter_a_page_names_exists(name, text):
    chapters = known_chapters()
    missing = sorted(referenced_chapters(text) - set(chapters))
    assert not missing, f"{name} refers to chapters that are not in _toc.yml: {missing}"
    for m in PAGE_REF.finditer(text):
        n, stem = int(m.group(1)), f"{m.group(1)}_{m.group(2)}"
        assert chapters.get(n) == stem, f"{name} links to {stem}, which is not a chapter"


def glossary_rows():
    text = (BOOK / "glossary.md").read_text(encoding="utf-8")
    rows = [ln for ln in text.splitlines() if ln.startswith("|")][2:]  # header, separator
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in rows]


def test_glossary_has_at_least_40_terms_each_with_existing_chapters():
    rows = glossary_rows()
    assert len(rows) >= 40, f"the glossary has {len(rows)} terms; at least 40 are wanted"
    chapters = known_chapters()
    for cells in rows:
        assert len(cells) == 4 and all(cells), f"glossary row needs 4 filled cells: {cells}"
        numbers = cells[3].split(",")
        assert all(n.strip().isdigit() for n in numbers), f"{cells[0]}: chapter {cells[3]!r}"
        missing = [int(n) for n in numbers if int(n) not in chapters]
        assert not missing, f"glossary term {cells[0]!r} names missing chapters {missing}"


def test_glossary_terms_are_unique():
    terms = [cells[0].lower() for cells in glossary_rows()]
    assert len(terms) == len(set(terms))


def test_notation_entries_name_existing_chapters():
    text = (BOOK / "notation.md").read_text(encoding="utf-8")
    rows = [ln for ln in text.splitlines() if ln.startswith("|")][2:]
    assert len(rows) >= 10
    chapters = known_chapters()
    for ln in rows:
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        assert len(cells) == 3 and all(cells), ln
        missing = [int(n) for n in re.findall(r"\d+", cells[2]) if int(n) not in chapters]
        assert not missing, f"notation {cells[0]!r} names missing chapters {missing}"


def test_every_cited_paper_key_is_cited_only_with_cite():
    """A paper named by its arXiv link rather than a {cite} escapes the bibliography: every
    arxiv.org/abs link in a chapter's markdown must come with a {cite} in the same cell."""
    for path in sorted(BOOK.glob("*.ipynb")):
        for c in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] == "markdown" and "arxiv.org/abs" in src:
                assert "{cite}" in src, f"{path.name}: an arXiv link without a {{cite}}"
