"""Build the Korean edition, and keep its message catalogs in step with the English sources.

    python book/_ext/korean_edition.py build     # the Korean book in _build/ko/html (-W -n)
    python book/_ext/korean_edition.py extract   # the English messages, _build/gettext/**/*.pot
    python book/_ext/korean_edition.py update    # extract, then update locales/ko/LC_MESSAGES
    python book/_ext/korean_edition.py build --only book/02_self_attention --no-execute
                                                 # a quick look at one page (root page + it)

Both editions are built by jupyter-book's own Sphinx entry point from the same _config.yml and
_toc.yml; the Korean one only sets ``language = "ko"`` (so Sphinx reads the catalogs of
``locales/ko``), its own output and doctree folders, and the English build's execution cache,
``_build/.jupyter_cache``: jupyter-cache keys a notebook on its code cells, which the
translation does not touch, so every notebook the English build executed is read from there.
Build the English edition first (README); a notebook missing from the cache would be executed.

``extract`` reads the sources with execution off (messages come from markdown only: code cells
and their outputs are not translated) and writes one .pot per page (``gettext_compact: false``).
``update`` runs ``sphinx-intl update``, which adds new messages untranslated, marks changed ones
fuzzy and keeps removed ones as obsolete comments; tests/test_korean_catalogs.py fails until
every message is translated and none is fuzzy (locales/TRANSLATING.md).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LANGUAGE = "ko"
LOCALES = ROOT / "locales"
CACHE = ROOT / "_build" / ".jupyter_cache"
REDIRECT = '\n<meta http-equiv="Refresh" content="0; url={first_page}" />\n'


def _sphinx(builder: str, outdir: Path, doctreedir: Path, overrides: dict, strict: bool,
            toc: Path | None = None) -> int:
    from jupyter_book.sphinx import build_sphinx

    overrides = {"external_toc_path": str(toc or ROOT / "_toc.yml"),
                 "latex_individualpages": False, **overrides}
    if strict:
        overrides["nitpicky"] = True
    result = build_sphinx(str(ROOT), str(outdir), noconfig=True,
                          path_config=str(ROOT / "_config.yml"), confoverrides=overrides,
                          doctreedir=str(doctreedir), builder=builder, freshenv=True,
                          warningiserror=strict, keep_going=strict)
    if isinstance(result, Exception):
        raise SystemExit(f"the {builder} build failed: {result!r}")
    return result


def build(outdir: Path = ROOT / "_build" / "ko" / "html", toc: Path | None = None,
          strict: bool = True, execute: bool = True) -> int:
    """The Korean edition, every page of ``toc``, warnings as errors when ``strict``."""
    overrides = {"language": LANGUAGE, "nb_execution_cache_path": str(CACHE)}
    if not execute:
        overrides["nb_execution_mode"] = "off"
    else:
        missing = not_in_cache(Path(toc or ROOT / "_toc.yml"))
        if missing:
            raise SystemExit(
                f"not in the execution cache {CACHE.relative_to(ROOT)} (or their code changed "
                f"since): {', '.join(missing)}. Build the English edition first (README), so "
                f"that the Korean one executes nothing a second time; or pass --no-execute.")
    status = _sphinx("html", outdir, outdir.parent / ".doctrees", overrides, strict=strict,
                     toc=toc)
    if status == 0:  # as `jupyter-book build` does: index.html sends the reader to the root page
        import yaml

        root = yaml.safe_load(Path(toc or ROOT / "_toc.yml").read_text(encoding="utf-8"))["root"]
        (outdir / "index.html").write_text(REDIRECT.format(first_page=f"{root}.html"),
                                           encoding="utf-8")
    return status


def notebooks(toc: Path) -> list[Path]:
    """The notebooks among the pages of ``toc``."""
    import yaml

    def files(entry):
        if isinstance(entry, dict):
            if "file" in entry:
                yield entry["file"]
            for key in ("parts", "chapters", "sections"):
                for sub in entry.get(key, []):
                    yield from files(sub)

    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    names = [data["root"], *files(data)]
    return [ROOT / f"{n}.ipynb" for n in names if (ROOT / f"{n}.ipynb").exists()]


def not_in_cache(toc: Path) -> list[str]:
    """The notebooks of ``toc`` whose code cells the execution cache has no run of."""
    import nbformat
    from jupyter_cache import get_cache

    if not (CACHE / "global.db").exists():
        return [p.relative_to(ROOT).as_posix() for p in notebooks(toc)]
    cache = get_cache(str(CACHE))
    missing = []
    for path in notebooks(toc):
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            missing.append(path.relative_to(ROOT).as_posix())
    return missing


def extract(outdir: Path = ROOT / "_build" / "gettext") -> int:
    """The English messages of every page, one .pot per page, without executing anything."""
    shutil.rmtree(outdir, ignore_errors=True)
    overrides = {"language": "en", "nb_execution_mode": "off", "project": "Transformers, executed"}
    return _sphinx("gettext", outdir, outdir / ".doctrees", overrides, strict=False)


def update(potdir: Path = ROOT / "_build" / "gettext") -> int:
    """Extract, then bring locales/ko/LC_MESSAGES up to date with the .pot files."""
    status = extract(potdir)
    if status:
        return status
    status = subprocess.call([sys.executable, "-m", "sphinx_intl", "update", "-p", str(potdir),
                              "-d", str(LOCALES), "-l", LANGUAGE, "-w", "0", "-j", "1"])
    if not status:
        drop_format_flags()
    return status


def drop_format_flags(locales: Path = LOCALES) -> list[Path]:
    """Remove the ``python-format`` flag that Babel sets on any message with a ``%`` in it.

    The catalogs hold prose: "90% of the weight" is not a format string, but with the flag
    ``msgfmt --check`` demands the same directives in the translation, which no Korean
    sentence has ("90%의" is an invalid one). Returns the catalogs rewritten."""
    from babel.messages.pofile import read_po, write_po

    changed = []
    for path in sorted((locales / LANGUAGE / "LC_MESSAGES").rglob("*.po")):
        with open(path, "rb") as f:
            catalog = read_po(f)
        raw = path.read_text(encoding="utf-8")
        if "python-format" not in raw:
            continue
        for message in catalog:
            message.flags.discard("python-format")
        with open(path, "wb") as f:
            write_po(f, catalog, width=0)
        changed.append(path)
    return changed


def _subset_toc(pages: list[str]) -> Path:
    """A table of contents with the root page and ``pages``, in _build/ko-only/_toc.yml."""
    import yaml

    root = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))["root"]
    names = [str(Path(p).with_suffix("")) for p in pages]
    missing = [n for n in names if not list(ROOT.glob(n + ".*"))]
    if missing:
        raise SystemExit(f"no such page: {missing}")
    path = ROOT / "_build" / "ko-only" / "_toc.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    # the bibliography too, so that citations resolve
    names += [] if "book/bibliography" in names else ["book/bibliography"]
    toc = {"format": "jb-book", "root": root,
           "chapters": [{"file": n} for n in names if n != root]}
    path.write_text(yaml.safe_dump(toc), encoding="utf-8")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "extract", "update"])
    parser.add_argument("--out", type=Path, help="output folder (build: _build/ko/html, "
                        "extract: _build/gettext)")
    parser.add_argument("--toc", type=Path, help="another _toc.yml (build only: a subset)")
    parser.add_argument("--only", nargs="+", metavar="PAGE", help="build only: the root page "
                        "and these pages (book/02_self_attention ...), warnings not errors, "
                        "into _build/ko-only/html unless --out")
    parser.add_argument("--no-execute", action="store_true", help="build only: notebooks "
                        "without outputs (nothing executed, the cache not read)")
    args = parser.parse_args(argv)
    if args.command == "build":
        if args.only:
            if args.toc:
                parser.error("--only and --toc exclude each other")
            return build(args.out or ROOT / "_build" / "ko-only" / "html",
                         _subset_toc(args.only), strict=False, execute=not args.no_execute)
        return build(args.out or ROOT / "_build" / "ko" / "html", args.toc,
                     execute=not args.no_execute)
    if args.toc or args.only or args.no_execute:
        parser.error("--toc, --only and --no-execute are for build only: the catalogs always "
                     "cover the whole book, read without execution")
    if args.command == "extract":
        return extract(args.out or ROOT / "_build" / "gettext")
    return update(args.out or ROOT / "_build" / "gettext")


if __name__ == "__main__":
    sys.exit(main())
