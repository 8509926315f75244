"""Make Korean text in the HTML book render without a system Korean font or a network.

Copies NanumGothic (shipped by the PyPI package koreanize-matplotlib, which the plots already use)
into the build's ``_static`` (minus the empty tables browsers refuse) and adds it as a fallback web font after the theme's fonts, so Latin
text keeps the theme's look and Hangul falls back to NanumGothic. Nothing is committed.
"""
from pathlib import Path

CSS = """@font-face {
  font-family: "NanumGothicBook";
  src: url("NanumGothic.ttf") format("truetype");
  unicode-range: U+1100-11FF, U+3130-318F, U+AC00-D7AF;
}
:root {
  --pst-font-family-base: var(--pst-font-family-base-system), "NanumGothicBook";
  --pst-font-family-heading: var(--pst-font-family-base-system), "NanumGothicBook";
  --pst-font-family-monospace: var(--pst-font-family-monospace-system), "NanumGothicBook";
}
html.korean-font-loaded { font-kerning: normal; }
"""

# Chromium sometimes keeps the fallback's empty boxes in Hangul laid out before the font arrived
# (the Korean edition's sidebar and header: its search button, the part captions, the language
# switch), although the font has loaded. Once it has, a change of an inherited font property
# makes every element shape its text again, now with NanumGothic. The browser test caught the
# boxes (Chromium reported DejaVu Sans for those nodes; a screenshot showed them) in 4 of 7 runs.
JS = """document.fonts.load('1em "NanumGothicBook"', '\ud55c').then(() =>
  document.documentElement.classList.add("korean-font-loaded"));
"""


def font_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("koreanize_matplotlib")  # located, not imported
    folder = Path(list(spec.submodule_search_locations)[0]) if spec else Path("?")
    path = folder / "fonts" / "NanumGothic.ttf"
    if not path.exists():
        raise RuntimeError(f"NanumGothic not found at {path}; pip install koreanize-matplotlib")
    return path


def _write(app, exc):
    if exc is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        from fontTools.ttLib import TTFont  # installed with matplotlib

        font = TTFont(str(font_file()))
        # The shipped file carries empty VTT source tables (TSI0-TSI5); browsers' font
        # sanitizer rejects the whole font because of them ("TSI3: zero-length table").
        for tag in [t for t in font.keys() if t.startswith("TSI")]:
            del font[tag]
        font.save(str(static / "NanumGothic.ttf"))
        (static / "korean-font.css").write_text(CSS, encoding="utf-8")
        (static / "korean-font.js").write_text(JS, encoding="utf-8")


def _preload(app, pagename, templatename, context, doctree):
    # fetch the font with the page, so Hangul is never first painted with a fallback (boxes)
    href = context["pathto"]("_static/NanumGothic.ttf", 1)
    context["metatags"] = context.get("metatags", "") + (
        f'\n<link rel="preload" href="{href}" as="font" type="font/ttf" crossorigin>')


def setup(app):
    font_file()
    app.add_css_file("korean-font.css")
    app.add_js_file("korean-font.js")
    app.connect("html-page-context", _preload)
    app.connect("build-finished", _write)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
