"""tools/check_claims.py: it runs a notebook under the setting it names and reports a failing
assert with the values of its parts (a tiny notebook, a few seconds)."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def test_claims_check_reports_the_setting_and_the_failing_values(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import os, torch\n"
            "from transformer_book import book_seed\n"
            "assert os.environ['BOOK_SEED'] == '3' and book_seed(1) == 4\n"
            "assert torch.get_num_threads() == 1"),
        nbformat.v4.new_code_cell(
            "acc = {'a': [0.5, 0.6], 'b': [0.2, 0.9]}\n"
            "def check(x, margin=0.2):\n"
            "    gain = sum(x) / len(x) - 0.5\n"
            "    assert gain > 2 * margin, 'too small'\n"
            "check(acc['a'])"),
        nbformat.v4.new_code_cell("assert all(v[1] > v[0] + 0.2 for k, v in acc.items())"),
        nbformat.v4.new_code_cell("reached = True"),
    ]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "claims.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "check_claims.py"), str(path),
                           "--settings", "seed3-1thread", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a claim failed
    (result,) = json.loads(out.read_text())
    assert result["setting"] == "seed3-1thread" and result["book_seed"] == 3
    assert not result["holds"]
    first, second = result["failures"]  # both asserts reported; the first cell held
    assert first["cell"] == 1 and "too small" in first["error"]
    assert first["statement"].startswith("assert gain > 2 * margin")
    values = dict(first["values"])
    assert values["2 * margin"] == "0.4" and values["gain"].startswith("0.05")
    assert second["cell"] == 2
    assert any("('a', [0.5, 0.6])" in name for name, _ in second["values"])  # the failing item
    assert "FAILS" in proc.stdout and "0 of 1 runs hold" in proc.stdout


def test_claims_check_rejects_an_unknown_setting():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "check_claims.py"), "04",
                           "--settings", "seedx"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "unknown setting" in proc.stderr
