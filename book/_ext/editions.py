"""Two editions of one book, English and Korean, built from the same sources.

- A language switch in every page's header links to the same page in the other edition, by a
  relative link, so it works offline from ``_build/`` (``_build/html`` and ``_build/ko/html``,
  the folders of ``book_editions``) and on any server that keeps the two folders side by side.
- One execution cache: the English build runs in jupyter-cache mode (``execute_notebooks:
  cache`` in _config.yml) and clears the cache before it reads any page, so every notebook it
  reads is executed afresh and a stale cache entry (jupyter-cache keys on code cells only: a
  change in the package would not be seen) never stands in for a run. The Korean build
  (``book/_ext/korean_edition.py``) keeps the cache, and since the translation changes only the
  markdown, every notebook is found there and none is executed a second time.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from sphinx import addnodes
from sphinx import locale as sphinx_locale
from sphinx.transforms import SphinxTransform
from sphinx.util.i18n import docname_to_domain

# language -> (the switch's label, the edition's HTML folder relative to the book's root)
EDITIONS = {"en": ("English", "_build/html"), "ko": ("한국어", "_build/ko/html")}
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SWITCH = "language-switch.html"


def other_edition(language: str) -> str:
    """The language of the other edition (English for every edition but English)."""
    return "ko" if language == "en" else "en"


def switch_href(pagename: str, this_outdir: str | os.PathLike, other_outdir: str | os.PathLike
                ) -> str:
    """The relative link from page ``pagename`` of the edition in ``this_outdir`` to the same
    page of the edition in ``other_outdir``."""
    if not isinstance(pagename, str) or not pagename or pagename.startswith("/"):
        raise ValueError(f"pagename must be a relative page name such as 'book/intro', "
                         f"got {pagename!r}")
    here = Path(os.path.abspath(this_outdir)) / Path(pagename).parent
    target = Path(os.path.abspath(other_outdir)) / f"{pagename}.html"
    return Path(os.path.relpath(target, here)).as_posix()


def _config_inited(app, config):
    if config.language not in config.book_editions:
        raise ValueError(f"language {config.language!r} has no edition in book_editions "
                         f"({sorted(config.book_editions)})")
    # the switch sits first among the buttons of the article header (visible on a phone too)
    options = dict(config.html_theme_options or {})
    end = options.get("article_header_end", ["article-header-buttons.html"])
    if isinstance(end, str):
        end = [e.strip() for e in end.split(",") if e.strip()]
    if SWITCH not in end:
        options["article_header_end"] = [SWITCH, *end]
    config.html_theme_options = options
    if str(TEMPLATES) not in config.templates_path:
        config.templates_path = [*config.templates_path, str(TEMPLATES)]
    if str(STATIC) not in config.html_static_path:
        config.html_static_path = [*config.html_static_path, str(STATIC)]


def _builder_inited(app):
    # an English build that may execute executes every notebook it reads: start from an empty
    # cache (the catalogs' extraction runs with execution off and leaves it alone)
    if app.config.language != "en" or app.config.nb_execution_mode != "cache":
        return
    cache = app.config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache"
    cache = Path(app.srcdir, cache)
    if cache.is_dir():
        if not (cache / "global.db").exists():
            raise RuntimeError(f"{cache} is not a jupyter-cache folder; not clearing it")
        shutil.rmtree(cache)


class TranslateTocCaptions(SphinxTransform):
    """Translate the captions of the table of contents (the book's parts) in the root page.

    Sphinx translates a toctree's caption with the rest of the page (its i18n transform), but
    sphinx-external-toc inserts the toctrees of _toc.yml later (transform priority 100), so the
    captions, which the catalogs' extraction does find, would stay English in the sidebar."""

    default_priority = 110  # after sphinx-external-toc's InsertToctrees

    def apply(self):
        if self.config.language == "en" or not self.config.locale_dirs:
            return
        domain = docname_to_domain(self.env.docname, self.config.gettext_compact)
        dirs = [str(Path(self.env.srcdir, d)) for d in self.config.locale_dirs]
        catalog, found = sphinx_locale.init(dirs, self.config.language, domain)
        if not found:
            return
        for toctree in self.document.findall(addnodes.toctree):
            caption = toctree.get("caption")
            if caption and catalog.gettext(caption) != caption:
                toctree["caption"] = toctree["rawcaption"] = catalog.gettext(caption)


def _page_context(app, pagename, templatename, context, doctree):
    if app.builder.format != "html":
        return
    here, there = app.config.language, other_edition(app.config.language)
    label, folder = app.config.book_editions[there]
    href = switch_href(pagename, app.outdir, Path(app.srcdir, folder))
    context["book_language_switch"] = {"href": href, "label": label, "lang": there}
    context["metatags"] = context.get("metatags", "") + (
        f'\n<link rel="alternate" hreflang="{there}" href="{href}">')


def setup(app):
    app.add_config_value("book_editions", EDITIONS, "html")
    app.add_css_file("language-switch.css")
    app.connect("config-inited", _config_inited)
    # before myst-nb's own builder-inited handler opens the cache
    app.connect("builder-inited", _builder_inited, priority=100)
    app.connect("html-page-context", _page_context)
    app.add_transform(TranslateTocCaptions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
