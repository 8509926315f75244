"""The claims check: run chapters on other seeds and on one thread, and say which asserts fail.

An asserted claim in a chapter must hold on the reader's machine, not only on the run it was
written from: another CPU or thread count changes the last digits of sums, and a few hundred
training steps turn that into a different run. This runs each chapter under

    seed1    BOOK_SEED=1 (every seed the chapter uses shifted by one, see runmode.book_seed)
    seed2    BOOK_SEED=2
    1thread  BOOK_SEED=0 on one torch thread (OMP_NUM_THREADS=1)

(any seedN, and seedN-1thread, can be named too, to measure a claim's spread over more seeds)
and prints, for each chapter and setting, "holds" or each assert that failed with the values of
its parts, read from the failing frame (after a failed assert the chapter runs on, so one run
reports all of its failing claims; any other error stops it). Usage (from the repository root):

    python tools/check_claims.py 06 08             # chapters by number or path, all settings
    python tools/check_claims.py --all --jobs 2    # every chapter; two at a time, one thread each
    python tools/check_claims.py 04 --settings seed1,seed2

With --jobs N > 1 every run gets one thread (two-thread runs side by side on a 2-core machine
are many times slower), so seed1 and seed2 then also run on one thread. Each run executes the
whole notebook in a fresh kernel with TQDM_DISABLE=1; nothing is written into the notebooks.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SETTINGS = ("seed1", "seed2", "1thread")


def parse_setting(name: str) -> tuple[int, int | None]:
    """'seedN' -> (N, default threads); '1thread' -> (0, 1); 'seedN-1thread' -> (N, 1)."""
    m = re.fullmatch(r"(?:seed(\d+))?(?:-?(1thread))?", name)
    if not name or not m:
        raise ValueError(f"unknown setting {name!r}: expected seedN, 1thread or seedN-1thread")
    return int(m.group(1) or 0), (1 if m.group(2) else None)

# Runs in the kernel after a cell failed: find the innermost frame of the notebook's own code,
# the statement that raised there, and (for an assert) the values of its parts.
_EXPLAIN = r'''
def _claims_explain():
    import ast, json, linecache, sys
    tb, frames = getattr(sys, "last_traceback", None), []
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    mine = [(f, n) for f, n in frames
            if "ipykernel" in f.f_code.co_filename or f.f_code.co_filename.startswith("<ipython")]
    if not mine:
        return {"statement": None, "values": []}
    frame, lineno = mine[-1]
    source = "".join(linecache.getlines(frame.f_code.co_filename))
    line = linecache.getline(frame.f_code.co_filename, lineno).strip()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {"statement": line, "line": lineno, "values": []}
    hits = [s for s in ast.walk(tree) if isinstance(s, ast.Assert)
            and s.lineno <= lineno <= (s.end_lineno or s.lineno)]
    if not hits:
        return {"statement": line, "line": lineno, "values": []}
    stmt = hits[-1]
    parts = []
    def collect(node, depth=0):
        if isinstance(node, ast.Constant) or depth > 3:
            return
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                collect(v, depth + 1)
            return
        if isinstance(node, ast.UnaryOp):
            collect(node.operand, depth + 1)
            return
        if isinstance(node, ast.Compare):
            for v in [node.left] + list(node.comparators):
                collect(v, depth + 1)
            return
        parts.append(node)
        if isinstance(node, ast.Call):  # its arguments, not the function called
            for child in list(node.args) + [k.value for k in node.keywords]:
                collect(child, depth + 1)
        elif isinstance(node, ast.BinOp):
            collect(node.left, depth + 1)
            collect(node.right, depth + 1)
    collect(stmt.test)
    values, seen = [], set()
    # all(<generator>) / any(<generator>): the items, with the parts of each comparison
    for node in [n for n in ast.walk(stmt.test) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id in ("all", "any")
                 and len(n.args) == 1 and isinstance(n.args[0], ast.GeneratorExp)][:2]:
        gen = node.args[0]
        target = ast.Tuple([ast.parse(ast.unparse(c.target), mode="eval").body
                            for c in gen.generators], ast.Load())
        ops = [o for c in ast.walk(gen.elt) if isinstance(c, ast.Compare)
               for o in [c.left] + list(c.comparators) if not isinstance(o, ast.Constant)]
        ops = ops[:6]
        comp = ast.ListComp(ast.Tuple([target, gen.elt] + ops, ast.Load()), gen.generators)
        try:
            rows = eval(compile(ast.fix_missing_locations(ast.Expression(comp)), "<claims>",
                                "eval"), frame.f_globals, frame.f_locals)
        except Exception:
            continue
        names = ast.unparse(target)
        for row in rows[:12]:
            ok = bool(row[1])
            if node.func.id == "all" and ok:
                continue
            detail = ", ".join(f"{ast.unparse(o)} = {v!r}"[:120] for o, v in zip(ops, row[2:]))
            values.append([f"[{node.func.id}] {names} = {row[0]!r}",
                           f"{ok}" + (f"; {detail}" if detail else "")])
    for node in parts:
        text = ast.unparse(node)
        if text in seen or len(values) >= 12:
            continue
        seen.add(text)
        try:
            value = eval(compile(ast.Expression(node), "<claims>", "eval"),
                         frame.f_globals, frame.f_locals)
        except Exception:
            continue  # a comprehension's variable, say: nothing to show at this level
        if callable(value) or type(value).__name__ in ("module", "generator"):
            continue
        r = repr(value)
        values.append([text, r if len(r) <= 300 else r[:297] + "..."])
    return {"statement": ast.unparse(stmt), "line": stmt.lineno, "values": values}
import json as _claims_json
print("CLAIMS-EXPLAIN " + _claims_json.dumps(_claims_explain()))
'''


def chapter_paths(names: list[str], every: bool) -> list[Path]:
    book = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    if every:
        return book
    paths = []
    for name in names:
        p = Path(name)
        if p.suffix == ".ipynb" and (ROOT / p).exists():
            paths.append((ROOT / p).resolve())
            continue
        match = [b for b in book if b.name.startswith(name.zfill(2) + "_") or b.stem == name]
        if len(match) != 1:
            raise SystemExit(f"no single chapter matches {name!r} (expected a number like 06, "
                             f"a stem like 06_transformer or a path)")
        paths.append(match[0])
    return paths


def run_one(path: Path, timeout: int, keep: str | None = None) -> dict:
    """Execute one notebook in a fresh kernel (this process's environment) and report."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    result = {"chapter": path.stem, "holds": True, "failures": []}
    with client.setup_kernel():
        for index, cell in enumerate(list(nb.cells)):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as err:
                failure = {"cell": index, "error": f"{err.ename}: {err.evalue}"[:500]}
                probe = nbformat.v4.new_code_cell(_EXPLAIN)
                nb.cells.append(probe)
                try:
                    client.execute_cell(probe, len(nb.cells) - 1)
                    text = "".join(o.get("text", "") for o in probe.outputs)
                    for line in text.splitlines():
                        if line.startswith("CLAIMS-EXPLAIN "):
                            failure.update(json.loads(line[len("CLAIMS-EXPLAIN "):]))
                except Exception as probe_err:  # the report still names the cell and error
                    failure["explain_error"] = repr(probe_err)[:300]
                result["holds"] = False
                result["failures"].append(failure)
                # an assert cell only checks, so the cells after it can still run and report
                # their own claims; any other error stops the chapter
                if err.ename != "AssertionError":
                    break
            except Exception as err:  # a timeout or a dead kernel
                result["holds"] = False
                result["failures"].append({"cell": index, "error": repr(err)[:500]})
                break
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if keep:  # the executed notebook, outputs and all, to read the printed numbers
        nbformat.write(nb, keep)
    return result


def run_setting(path: Path, setting: str, threads_override: int | None, timeout: int,
                keep: str | None = None) -> dict:
    seed, threads = parse_setting(setting)
    threads = threads_override or threads
    env = dict(os.environ, BOOK_SEED=str(seed), TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    env.pop("BOOK_SMOKE", None)
    # this checkout's package, whatever is installed; results one chapter leaves for the next
    # (chapter 8's fine-tuning for chapter 9) kept apart per setting
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                      env.get("PYTHONPATH")]))
    env["BOOK_RESULTS"] = str(ROOT / "_build" / "claims" / setting)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(path),
           "--timeout", str(timeout)]
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        cmd += ["--keep", str(Path(keep).resolve() / f"{path.stem}.{setting}.ipynb")]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("CLAIMS-RESULT ")]
    if proc.returncode != 0 or not lines:
        error = (proc.stderr.strip().splitlines() or ["no output"])[-1][:500]
        result = {"chapter": path.stem, "holds": False, "failures": [{"error": error}]}
    else:
        result = json.loads(lines[-1][len("CLAIMS-RESULT "):])
    result.update(setting=setting, threads=threads or "default", book_seed=seed)
    return result


def describe(r: dict) -> str:
    head = (f"{r['chapter']:<28} {r['setting']:<8} (BOOK_SEED={r['book_seed']}, "
            f"threads {r['threads']}) ")
    if r["holds"]:
        return head + f"holds ({r.get('seconds', '?')} s)"
    lines = [head + f"FAILS ({r.get('seconds', '?')} s)"]
    for f in r.get("failures", []):
        lines.append(f"  cell {f.get('cell', '?')}: {f.get('error', '')}")
        if f.get("statement"):
            lines.append(f"    line {f.get('line', '?')}: {f['statement']}")
        lines += [f"      {expr} = {value}" for expr, value in f.get("values", [])]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers (06), stems or paths")
    ap.add_argument("--all", action="store_true", help="every chapter in book/")
    ap.add_argument("--settings", default=",".join(DEFAULT_SETTINGS),
                    help="comma-separated: seedN (BOOK_SEED=N), 1thread (BOOK_SEED=0 on one "
                         "thread) or seedN-1thread (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once; above 1 every run gets one thread")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", help="write each executed notebook (with its outputs) into this "
                                   "folder, as CHAPTER.SETTING.ipynb")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one notebook, print JSON
    args = ap.parse_args(argv)

    if args.one:
        print("CLAIMS-RESULT " + json.dumps(run_one(Path(args.one), args.timeout, args.keep)))
        return 0
    if not args.chapters and not args.all:
        ap.error("name chapters (06 08 ...) or pass --all")
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    for s in settings:
        try:
            parse_setting(s)
        except ValueError as err:
            ap.error(str(err))
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    threads = 1 if args.jobs > 1 else None
    runs = [(p, s) for p in chapter_paths(args.chapters, args.all) for s in settings]
    print(f"claims check: {len(runs)} runs, {args.jobs} at a time"
          + (", one thread each" if threads else ""), flush=True)
    t0, results = time.perf_counter(), []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_setting, p, s, threads, args.timeout, args.keep)
                   for p, s in runs]
        for f in futures:  # in order; each line as soon as its run and the ones before end
            results.append(f.result())
            print(describe(results[-1]), flush=True)
    failed = [r for r in results if not r["holds"]]
    print(f"\n{len(results) - len(failed)} of {len(results)} runs hold "
          f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
