"""The pretraining command line (python -m transformer_book.pretrain_gpt): DDP on 2 CPU
processes = one process with the same global batch; a run stopped and resumed = an
uninterrupted run. Each test trains a tiny GPT for a few steps."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from transformer_book.pretrain_gpt import CHECKPOINT, global_batch, main, parse_args

TINY = ["--preset", "gpt2-tiny", "--set", "d_model=32", "--set", "n_heads=2",
        "--set", "n_layers=2", "--set", "d_ff=64", "--context", "32", "--lr", "3e-3",
        "--warmup", "2", "--eval-batches", "0", "--seed", "3"]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    e["PYTHONPATH"] = os.pathsep.join(p for p in (src, e.get("PYTHONPATH")) if p)
    return e


def run(args, nproc=1):
    if nproc == 1:
        cmd = [sys.executable, "-m", "transformer_book.pretrain_gpt", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "transformer_book.pretrain_gpt", *args]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r.stdout


def weights(out):
    return {k: v for k, v in load_file(str(out / CHECKPOINT)).items() if k.startswith("model.")}


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    steps = ["--steps", "4", "--global-batch", "8"]
    run([*TINY, *steps, "--batch", "4", "--out", str(tmp_path / "one")])  # 1 x 4 x 2 accum
    out = run([*TINY, *steps, "--batch", "2", "--out", str(tmp_path / "two")], nproc=2)
    assert "2 process(es)" in out and "2 x 2 x 2 accumulation" in out
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    # the initial weights: one step at a negligible learning rate
    main([*TINY, "--steps", "1", "--lr", "1e-30", "--batch", "1", "--out", str(tmp_path / "init")])
    init = weights(tmp_path / "init")
    assert one.keys() == two.keys()
    moved = 0.0
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5)
        moved = max(moved, float((one[k] - init[k]).abs().max()))
    assert moved > 1e-3  # the steps did change the weights, far beyond the tolerance


def test_stopped_and_resumed_equals_uninterrupted(tmp_path):
    common = [*TINY, "--steps", "6", "--batch", "2", "--global-batch", "4"]
    run([*common, "--out", str(tmp_path / "straight")])
    run([*common, "--stop-at", "3", "--out", str(tmp_path / "resumed")])
    halfway = weights(tmp_path / "resumed")
    out = run([*common, "--resume", "--out", str(tmp_path / "resumed")])
    assert "from step 3" in out
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    assert any(not torch.equal(halfway[k], a[k]) for k in a)  # the second half did train


def test_global_batch_is_a_function_of_seed_and_step():
    ids = torch.arange(1000)
    x, y = global_batch(ids, 5, 6, 10, seed=0)
    x2, _ = global_batch(ids, 5, 6, 10, seed=0)
    assert x.shape == y.shape == (6, 10) and torch.equal(x, x2)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert not torch.equal(global_batch(ids, 6, 6, 10, seed=0)[0], x)


def test_bad_arguments_are_named(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--preset", "bert-tiny"])
    assert "GPT preset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="multiple"):
        main([*TINY, "--steps", "1", "--batch", "3", "--global-batch", "8", "--out", "/tmp/x"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        main([*TINY, "--set", "width=3", "--steps", "1", "--out", "/tmp/x"])
