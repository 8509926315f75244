"""The reader's view: every page of both editions of the built book, English (`_build/html`) and
Korean (`_build/ko/html`), loaded in headless Chromium with no network.

Run after the book builds (`.ci/run` does): `pytest -m browser tests/test_browser.py`. The
README's plain `pytest` deselects these tests (pyproject.toml's addopts), since they need the
built editions and Chromium (`apt-get install chromium`; $CHROMIUM names another binary).

`_build/` is served from 127.0.0.1 (so that the links between the two editions resolve as they
do offline) and Chromium is driven through the DevTools protocol (a small client over
`websocket-client`). On every page of each edition, at desktop width and again at phone width
(390 px), the test checks what a reader would notice:
- every request the page makes goes to the local server and succeeds (MathJax, the fonts, the
  images and the scripts are all in the build: nothing comes from a network);
- MathJax typeset every formula: each `.math` element holds MathJax output, none is an error,
  and no raw `\\(`, `\\[` or `$$` is left in the text outside code;
- every image loaded (natural width > 0);
- no executed cell shows an error (a traceback or an error output);
- Hangul is drawn with the bundled NanumGothic: Chromium reports that font for the page's Hangul
  text, and a Hangul string in the page's font is as wide as in NanumGothic and not as wide as
  in the browser's fallback;
- a notebook page has a Colab launch link to its own .ipynb in the repository of _config.yml;
- every link into the book resolves to a page, and its #fragment to an element of that page;
- the page is in its edition's language (`<html lang>`), and its header holds one language
  switch, visible at both widths, linking to the same page of the other edition;
- at 390 px the page does not scroll sideways (wide code and math scroll inside their boxes).

The Korean edition's search page finds the pages that write 어텐션 with a particle attached
(어텐션은, 어텐션의) when asked for 어텐션 (book/_ext/korean_search.py).

Screenshots of the intro, three chapters and the glossary, at both widths, are written to
`_build/screenshots/` for a person to look at (the Korean edition's with a `ko-` prefix).
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
# each edition's language and HTML folder (book/_ext/editions.py builds the switch from the same)
EDITIONS = {"en": BUILD / "html", "ko": BUILD / "ko" / "html"}
HTML = EDITIONS["en"]
SHOTS = BUILD / "screenshots"
BUILD_COMMAND = {"en": "jupyter-book build -W -n --keep-going --all .",
                 "ko": "python book/_ext/korean_edition.py build"}
pytestmark = pytest.mark.browser

DESKTOP = dict(width=1280, height=900, deviceScaleFactor=1, mobile=False)
PHONE = dict(width=390, height=844, deviceScaleFactor=2, mobile=True)
SCREENSHOT_PAGES = ["book/intro.html", "book/02_self_attention.html", "book/06_transformer.html",
                    "book/08_gpt.html", "book/glossary.html"]
HANGUL = "트랜스포머어텐션한국어"  # no spaces: those come from the Latin font


def pages(edition: str = "en") -> list[str]:
    html = EDITIONS[edition]
    if not (html / "index.html").exists():
        return []
    skip = ("_static/", "_sources/", "_images/", "_sphinx_design_static/", "jupyter_execute/")
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if not p.relative_to(html).as_posix().startswith(skip))


def edition_pages() -> list[str]:
    """Every page of both editions, as "en/book/intro.html", "ko/book/intro.html", ..."""
    found = [f"{edition}/{page}" for edition in EDITIONS for page in pages(edition)]
    return found or ["(no built book)"]


def other(edition: str) -> str:
    return "ko" if edition == "en" else "en"


def url_of(server: str, edition: str, page: str) -> str:
    return server + EDITIONS[edition].relative_to(BUILD).as_posix() + "/" + page


def repository():
    import yaml

    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", cfg["url"])
    assert m, f"repository.url is not a GitHub repository: {cfg['url']}"
    return m.group(1), m.group(2), cfg.get("branch", "main"), cfg.get("path_to_book", "")


# ---------------------------------------------------------------- a small DevTools client
class DevTools:
    """One page target of Chromium, driven over the DevTools protocol's websocket."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.last_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params):
        self.last_id += 1
        self.ws.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.last_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.events):
                if msg["method"] == event:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} within {timeout} s")
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            self.ws.settimeout(120)
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True, timeout=60000)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self):
        self.ws.close()


@pytest.fixture(scope="module")
def server():
    for edition, html in EDITIONS.items():
        if not (html / "index.html").exists():
            pytest.fail(f"no built {edition} edition: run `{BUILD_COMMAND[edition]}` first")
    shutil.rmtree(SHOTS, ignore_errors=True)  # screenshots of this run only
    handler = functools.partial(_QuietHandler, directory=str(BUILD))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not binary:
        pytest.fail("Chromium is missing: apt-get install chromium (or set $CHROMIUM)")
    profile = tempfile.mkdtemp(prefix="book-chromium-")
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--disable-sync", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         # no network: only the book's own server (127.0.0.1) resolves
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
            elif not line and proc.poll() is not None:
                break
        assert port, f"Chromium did not start (exit {proc.poll()})"
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        tab = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Network", "Runtime", "DOM", "CSS"):
            tab.call(f"{domain}.enable")
        tab.call("Network.setCacheDisabled", cacheDisabled=False)
        yield tab
        tab.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------- what the page reports
SETTLE = """(async () => {
  for (const img of document.images) img.loading = "eager";
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await document.fonts.load('32px "NanumGothicBook"', '한');
  await document.fonts.ready;
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  // two frames: the page shapes the text laid out before NanumGothic arrived again
  // (book/_ext/korean_font.py; without it Chromium kept boxes in the Korean sidebar)
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return true;
})()"""

INSPECT = r"""(() => {
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .output";
  const rawTeX = [];
  const hangulNodes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || !el.getClientRects().length) continue;
    const t = n.textContent;
    if (/[\uAC00-\uD7AF]/.test(t) && hangulNodes.length < 6) hangulNodes.push(el);
    if (el.closest(skip)) continue;
    if (/\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\s][^$]*\\[a-zA-Z]+[^$]*\$/.test(t)) rawTeX.push(t.trim().slice(0, 100));
  }
  hangulNodes.forEach((el, i) => el.setAttribute("data-hangul-check", String(i)));
  const maths = [...document.querySelectorAll(".math")];
  const untypeset = maths.filter(e => !e.querySelector("mjx-container"))
                         .map(e => e.textContent.trim().slice(0, 100));
  const mathErrors = [...document.querySelectorAll("mjx-merror, [data-mjx-error]")]
      .map(e => e.getAttribute("data-mjx-error") || e.textContent.slice(0, 100));
  const badImages = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
      .map(i => i.getAttribute("src"));
  const errorOutputs = [...document.querySelectorAll(
      ".cell_output .traceback, .cell_output .error, .cell_output .stderr, .output.traceback")]
      .map(e => e.textContent.trim().slice(0, 200));
  for (const e of document.querySelectorAll(".cell_output"))
    if (/Traceback \(most recent call last\)|^\w+Error: /m.test(e.textContent))
      errorOutputs.push(e.textContent.trim().slice(0, 200));
  const width = family => {
    const s = document.createElement("span");
    s.style.cssText = "position:absolute;visibility:hidden;white-space:nowrap;font-size:32px";
    s.style.fontFamily = family;
    s.textContent = HANGUL;
    document.body.appendChild(s);
    const w = s.getBoundingClientRect().width;
    s.remove();
    return w;
  };
  const bodyFont = getComputedStyle(document.body).fontFamily;
  const nanumLoaded = [...document.fonts].some(
      f => f.family.replace(/"/g, "") === "NanumGothicBook" && f.status === "loaded");
  const links = [...document.querySelectorAll("a[href]")].map(a => a.href);
  const colab = [...document.querySelectorAll("a[href*='colab.research.google.com']")]
      .map(a => a.href);
  // sideways scroll: the page is wider than the screen; name the elements that stick out
  const vw = document.documentElement.clientWidth;
  const scrollWidth = document.documentElement.scrollWidth;
  const wide = [];
  if (scrollWidth > vw + 1) {
    for (const el of document.body.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.right <= vw + 1 || r.width === 0) continue;
      let clipped = false;
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        const ox = getComputedStyle(p).overflowX;
        if (ox !== "visible") { clipped = true; break; }
      }
      if (!clipped) wide.push(`${el.tagName.toLowerCase()}.${[...el.classList].join(".")}` +
                              ` right=${Math.round(r.right)}`);
      if (wide.length >= 8) break;
    }
  }
  const switches = [...document.querySelectorAll("a.book-language-switch")].map(a => {
    const r = a.getBoundingClientRect();
    return {href: a.href, visible: r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= vw + 1
                                   && getComputedStyle(a).visibility !== "hidden"};
  });
  return {url: location.href, lang: document.documentElement.lang, switches, rawTeX, untypeset, mathErrors, nMath: maths.length, badImages,
          nImages: document.images.length, errorOutputs, links, colab, nanumLoaded,
          wPage: width(bodyFont), wNanum: width('"NanumGothicBook"'), wFallback: width("sans-serif"),
          nHangul: hangulNodes.length, vw, scrollWidth, wide};
})()""".replace("HANGUL", json.dumps(HANGUL))


def load(tab: DevTools, url: str, metrics: dict) -> tuple[dict, list[str]]:
    """Load ``url`` at the given screen size; returns the page's report and the requests that
    failed or left 127.0.0.1."""
    tab.call("Emulation.setDeviceMetricsOverride", **metrics)
    tab.events.clear()
    tab.call("Page.navigate", url=url)
    tab.wait_for("Page.loadEventFired")
    tab.evaluate(SETTLE)
    report = tab.evaluate(INSPECT)
    requests, problems = {}, []
    for ev in tab.events:
        p = ev.get("params", {})
        if ev["method"] == "Network.requestWillBeSent":
            requests[p["requestId"]] = p["request"]["url"]
            if p["request"]["url"].endswith("/favicon.ico"):
                continue  # the browser asks for it on its own; the book sets no icon
            if not p["request"]["url"].startswith(("http://127.0.0.1:", "data:", "blob:")):
                problems.append(f"external request: {p['request']['url']}")
        elif (ev["method"] == "Network.responseReceived" and p["response"]["status"] >= 400
              and not p["response"]["url"].endswith("/favicon.ico")):
            problems.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
        elif ev["method"] == "Network.loadingFailed" and not p.get("canceled"):
            problems.append(f"failed ({p['errorText']}): {requests.get(p['requestId'], '?')}")
    return report, problems


def hangul_fonts(tab: DevTools) -> list[tuple[str, list[dict]]]:
    """For each element marked by INSPECT, the fonts Chromium drew its text with."""
    root = tab.call("DOM.getDocument", depth=0)["root"]["nodeId"]
    ids = tab.call("DOM.querySelectorAll", nodeId=root, selector="[data-hangul-check]")["nodeIds"]
    found = []
    for node in ids:
        text = tab.call("DOM.getOuterHTML", nodeId=node)["outerHTML"]
        fonts = tab.call("CSS.getPlatformFontsForNode", nodeId=node)["fonts"]
        found.append((re.sub(r"<[^>]+>", "", text)[:60], fonts))
    return found


@functools.lru_cache(maxsize=None)
def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def broken_links(links: list[str], origin: str) -> list[str]:
    bad = []
    for link in sorted(set(links)):
        if not link.startswith(origin):
            continue
        target, _, fragment = link.partition("#")
        target = target.split("?")[0]
        status, html = fetch(target)
        if status != 200:
            bad.append(f"{link} (HTTP {status})")
        elif fragment and not re.search(
                r'\b(?:id|name)="%s"' % re.escape(urllib.parse.unquote(fragment)), html):
            bad.append(f"{link} (no element #{fragment})")
    return bad


def screenshot(tab: DevTools, name: str) -> None:
    """The top of the page, then the first figure and the first display formula in view."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    spots = {"top": "window.scrollTo(0, 0)",
             "figure": "document.querySelector('.cell_output img')?.scrollIntoView()",
             "math": "document.querySelector('div.math')?.scrollIntoView()"}
    for spot, js in spots.items():
        tab.evaluate(f"(() => {{ window.scrollTo(0, 0); {js}; return true; }})()")
        if spot != "top" and tab.evaluate("window.scrollY") == 0:
            continue  # the page has no such element
        data = tab.call("Page.captureScreenshot", format="png")["data"]
        (SHOTS / f"{name}-{spot}.png").write_bytes(base64.b64decode(data))


# ---------------------------------------------------------------- the tests
@pytest.mark.parametrize("edition", EDITIONS)
def test_the_book_was_built(edition):
    assert pages(edition), f"no built {edition} edition: run `{BUILD_COMMAND[edition]}` first"
    assert "book/intro.html" in pages(edition)


def test_both_editions_have_the_same_pages():
    assert pages("en") == pages("ko"), set(pages("en")) ^ set(pages("ko"))


@pytest.mark.parametrize("edition_page", edition_pages())
def test_page_as_a_reader_sees_it(edition_page, server, browser):
    assert edition_page != "(no built book)", "build the book first"
    edition, page = edition_page.split("/", 1)
    url = url_of(server, edition, page)
    html = (EDITIONS[edition] / page).read_text(encoding="utf-8")
    redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', html, flags=re.I)
    if redirect:  # index.html only sends the reader to the first page
        assert fetch(urllib.parse.urljoin(url, redirect.group(1)))[0] == 200
        return
    failures = []
    owner, repo, branch, path_to_book = repository()
    notebook = (ROOT / page).with_suffix(".ipynb")
    for label, metrics in (("desktop", DESKTOP), ("phone", PHONE)):
        report, problems = load(browser, url, metrics)
        failures += [f"{label}: {p}" for p in problems]
        if report["rawTeX"]:
            failures.append(f"{label}: raw TeX left in the text: {report['rawTeX'][:3]}")
        if report["untypeset"] or report["mathErrors"]:
            failures.append(f"{label}: MathJax did not typeset {report['untypeset'][:3]} "
                            f"errors {report['mathErrors'][:3]}")
        if report["badImages"]:
            failures.append(f"{label}: images not loaded: {report['badImages']}")
        if report["errorOutputs"]:
            failures.append(f"{label}: error output from a cell: {report['errorOutputs'][:2]}")
        if not report["nanumLoaded"]:
            failures.append(f"{label}: the bundled NanumGothic did not load")
        if not (abs(report["wPage"] - report["wNanum"]) < 0.5
                and abs(report["wPage"] - report["wFallback"]) >= 0.5):
            failures.append(f"{label}: Hangul not drawn with NanumGothic (width {report['wPage']:.1f}"
                            f" vs NanumGothic {report['wNanum']:.1f}, fallback "
                            f"{report['wFallback']:.1f})")
        for text, fonts in hangul_fonts(browser):
            if not any(f["isCustomFont"] and "nanum" in f["familyName"].lower() for f in fonts):
                failures.append(f"{label}: Hangul in {text!r} drawn with {fonts}")
        if report["lang"] != edition:
            failures.append(f"{label}: <html lang={report['lang']!r}>, not {edition!r}")
        want_switch = url_of(server, other(edition), page)
        if [s["href"] for s in report["switches"]] != [want_switch]:
            failures.append(f"{label}: the language switch should link to {want_switch} once, "
                            f"found {report['switches']}")
        elif not report["switches"][0]["visible"]:
            failures.append(f"{label}: the language switch is not visible")
        if label == "desktop":
            if notebook.exists():
                want = (f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/"
                        + "/".join(filter(None, [path_to_book.strip("/"), page[:-5] + ".ipynb"])))
                if want not in report["colab"]:
                    failures.append(f"no Colab link to {want} (found {report['colab']})")
            failures += [f"broken link: {b}" for b in broken_links(report["links"], server)]
        elif report["scrollWidth"] > report["vw"] + 1:
            failures.append(f"phone: the page scrolls sideways ({report['scrollWidth']} px > "
                            f"{report['vw']} px): {report['wide']}")
        if page in SCREENSHOT_PAGES:
            prefix = "" if edition == "en" else f"{edition}-"
            screenshot(browser, f"{prefix}{Path(page).stem}-{label}")
    assert not failures, f"{edition_page}:\n" + "\n".join(failures)


SEARCH = r"""(async () => {
  for (let i = 0; i < 600; i++) {
    // the summary paragraph is empty until the search has finished
    const summary = document.querySelector("#search-results .search-summary");
    if (summary && summary.textContent.trim() && Search._pulse_status === -1) break;
    await new Promise(r => setTimeout(r, 100));
  }
  return [...document.querySelectorAll("#search-results ul.search li a")]
      .map(a => a.getAttribute("href"));
})()"""


def search(tab: DevTools, server: str, edition: str, query: str) -> list[str]:
    """The pages the edition's search page lists for ``query`` (as book/... names)."""
    tab.call("Emulation.setDeviceMetricsOverride", **DESKTOP)
    tab.events.clear()
    tab.call("Page.navigate", url=url_of(server, edition, "search.html?q="
                                         + urllib.parse.quote(query)))
    tab.wait_for("Page.loadEventFired")
    return sorted({re.sub(r"\.html.*$", "", h) for h in tab.evaluate(SEARCH)})


def test_korean_search_finds_words_written_with_particles(server, browser):
    """Sphinx has no Korean word splitter: without book/_ext/korean_search.py a page that
    writes a noun only with particles (과제로, 과제를) has no term for the noun, and the search
    page's substring match, which would still find 어텐션 inside 어텐션은, needs three letters:
    a search for 과제 then misses the page. Every Korean page whose text has one of these nouns
    followed by a particle must be found by a search for the noun."""
    import html as html_lib

    def pages_writing(pattern):
        found = []
        for page in pages("ko"):
            if page in ("search.html", "genindex.html", "index.html"):
                continue
            body = (EDITIONS["ko"] / page).read_text(encoding="utf-8")
            body = html_lib.unescape(re.sub(r"<[^>]+>", " ", body.split("<article", 1)[-1]))
            if re.search(pattern, body):
                found.append(page[:-5])
        return sorted(found)

    for noun in ("어텐션", "모델", "과제"):
        with_particle = pages_writing(noun + r"(?:은|는|이|가|을|를|의|에|과|와|으로|로)(?![가-힣])")
        assert with_particle, f"no Korean page writes {noun} with a particle yet"
        found = search(browser, server, "ko", noun)
        assert set(with_particle) <= set(found), (noun, sorted(set(with_particle) - set(found)))
    found = search(browser, server, "ko", "어텐션")
    for chapter in ("book/02_self_attention", "book/05_multi_head_attention"):
        assert chapter in found, f"searching 어텐션 does not find {chapter}: {found}"


def test_korean_sidebar_shows_the_translated_part_captions():
    """The parts of _toc.yml (Getting started, Attention, ...) are messages of the root page's
    catalog; sphinx-external-toc inserts them after Sphinx's translation, so
    book/_ext/editions.py translates them itself."""
    from babel.messages.pofile import read_po

    if not pages("ko"):
        pytest.fail(f"no built ko edition: run `{BUILD_COMMAND['ko']}` first")
    with open(ROOT / "locales" / "ko" / "LC_MESSAGES" / "book" / "intro.po", "rb") as f:
        catalog = {m.id: m.string for m in read_po(f) if m.id and m.string and not m.fuzzy}
    html = (EDITIONS["ko"] / "book" / "intro.html").read_text(encoding="utf-8")
    shown = re.findall(r'<p aria-level="2" class="caption" role="heading">'
                       r'<span class="caption-text">\s*([^<]+?)\s*</span>', html)
    assert shown, "no part captions in the sidebar"
    english = {m for m in catalog if m in shown}
    assert not english, f"translated part captions shown in English: {sorted(english)}"
