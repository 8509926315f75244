"""The Korean edition cannot fall behind the English one without a test saying so.

The Korean book is the English sources with the messages of locales/ko/LC_MESSAGES/book/*.po
(locales/TRANSLATING.md). These tests fail when
- a message is untranslated or fuzzy (it would show in English, or in an outdated translation);
- the catalogs are out of date with the English sources: the messages extracted afresh from the
  sources (into a temporary folder, nothing executed) differ from the catalogs' messages, page by
  page, or a page has no catalog, or a catalog no page (`python book/_ext/korean_edition.py
  update` brings them up to date);
- a translation changes what must stay byte-exact: its citations and cross-references, formulas
  and code spans are those of the English message.

"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CATALOGS = ROOT / "locales" / "ko" / "LC_MESSAGES"

ROLE = re.compile(r"\{[a-z:]+\}`[^`]*`")
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)
CODE = re.compile(r"(?<![`}])`[^`\n]+`")


def read(path: Path):
    from babel.messages.pofile import read_po

    with open(path, "rb") as f:
        return read_po(f)


def messages(path: Path) -> dict[str, object]:
    """The catalog's live messages (no header, no obsolete ones), by msgid."""
    return {m.id: m for m in read(path) if m.id}


def catalog_files() -> dict[str, Path]:
    return {p.relative_to(CATALOGS).with_suffix("").as_posix(): p
            for p in sorted(CATALOGS.rglob("*.po"))}


def test_there_is_one_catalog_per_page_of_the_book():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    pages = {toc["root"]} | {c["file"] for part in toc["parts"] for c in part["chapters"]}
    assert set(catalog_files()) == pages, (
        "locales/ko/LC_MESSAGES/ and _toc.yml disagree; run "
        "`python book/_ext/korean_edition.py update`")


def test_every_message_is_translated_and_none_is_fuzzy():
    problems, total = [], 0
    for page, path in catalog_files().items():
        live = messages(path)
        total += len(live)
        untranslated = [m.id for m in live.values() if not m.string]
        fuzzy = [m.id for m in live.values() if m.string and m.fuzzy]
        if untranslated or fuzzy:
            problems.append(f"{page}: {len(untranslated)} untranslated, {len(fuzzy)} fuzzy of "
                            f"{len(live)}, first: {(untranslated + fuzzy)[0][:80]!r}")
    assert total > 0, "no messages found: the catalogs are missing"
    assert not problems, ("Korean messages to translate (locales/TRANSLATING.md):\n"
                          + "\n".join(problems))


def test_catalogs_are_up_to_date_with_the_english_sources(tmp_path):
    out = tmp_path / "gettext"
    run = subprocess.run([sys.executable, str(ROOT / "book" / "_ext" / "korean_edition.py"),
                          "extract", "--out", str(out)], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    fresh = {p.relative_to(out).with_suffix("").as_posix(): p for p in out.rglob("*.pot")}
    ours = catalog_files()
    problems = [f"{page}: no catalog" for page in sorted(set(fresh) - set(ours))]
    problems += [f"{page}: a catalog for no page" for page in sorted(set(ours) - set(fresh))]
    for page in sorted(set(fresh) & set(ours)):
        want, have = set(messages(fresh[page])), set(messages(ours[page]))
        if want != have:
            new = sorted(want - have)
            problems.append(f"{page}: {len(new)} new or changed messages in the English "
                            f"(first: {new[0][:80] if new else '-'!r}), "
                            f"{len(have - want)} no longer there")
    assert not problems, ("the Korean catalogs are out of date with the English sources; run "
                          "`python book/_ext/korean_edition.py update`:\n" + "\n".join(problems))


def byte_exact_parts(text: str) -> dict[str, Counter]:
    roles = ROLE.findall(text)
    rest = ROLE.sub(" ", text)
    return {"roles and references": Counter(roles), "formulas": Counter(set(MATH.findall(rest))),
            "code": Counter(set(CODE.findall(MATH.sub(" ", rest))))}


def test_translations_keep_citations_references_formulas_and_code_as_they_are():
    problems = []
    for page, path in catalog_files().items():
        for m in messages(path).values():
            if not m.string:
                continue
            want, have = byte_exact_parts(m.id), byte_exact_parts(m.string)
            for kind in want:
                if want[kind] != have[kind]:
                    problems.append(f"{page}: {kind} differ in the translation of "
                                    f"{m.id[:60]!r}: missing {sorted(want[kind] - have[kind])},"
                                    f" added {sorted(have[kind] - want[kind])}")
    assert not problems, "\n".join(problems)


def test_the_byte_exact_parts_are_found():
    parts = byte_exact_parts("As {cite}`vaswani2017attention` put it, $q \\cdot k$ grows with "
                             "$d_k$ (see {doc}`02_self_attention`); `nn.Linear` and $d_k$ again.")
    assert parts["roles and references"] == Counter(
        ["{cite}`vaswani2017attention`", "{doc}`02_self_attention`"])
    assert parts["formulas"] == Counter(["$q \\cdot k$", "$d_k$"])
    assert parts["code"] == Counter(["`nn.Linear`"])


def test_no_catalog_flags_prose_as_a_python_format():
    """Babel flags any message with a % in it ("90% of") as python-format, and msgfmt --check
    then rejects the Korean ("90%의"); korean_edition.py update removes the flags."""
    flagged = [p.name for p in catalog_files().values()
               if "python-format" in p.read_text(encoding="utf-8")]
    assert not flagged, f"python-format flags in {flagged}: run korean_edition.py update"
