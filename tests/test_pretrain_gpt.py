"""The pretraining command line (python -m transformer_book.pretrain_gpt): DDP on 2 CPU
processes = one process with the same global batch; a run stopped and resumed = an
uninterrupted run. Each test trains a tiny GPT for a few steps."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from transformer_book.pretrain_gpt import (CHECKPOINT, dropout_seed, global_batch, main,
                                          parse_args)

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
    # dropout off: the runs differ in --batch (4 vs 2), so with dropout their micro-batches,
    # and with them the dropout masks, would differ (see the next test for dropout on)
    steps = ["--steps", "4", "--global-batch", "8", "--set", "dropout=0.0"]
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


def test_each_process_draws_its_own_dropout_masks(tmp_path):
    """One seed on every rank used to repeat the same dropout masks on all processes. Masks
    are now seeded by the rows of the global batch a micro-batch holds: the ranks differ, and
    two processes of --batch 2 equal one process of --batch 2 with 2 accumulation steps."""
    drop = [*TINY, "--steps", "3", "--global-batch", "4", "--batch", "2",
            "--set", "dropout=0.3"]
    run([*drop, "--out", str(tmp_path / "one")])  # 1 x 2 x 2 accumulation
    out = run([*drop, "--out", str(tmp_path / "two")], nproc=2)  # 2 x 2 x 1
    assert "2 x 2 x 1 accumulation" in out
    run([*drop, "--set", "dropout=0.0", "--out", str(tmp_path / "off")])
    one, two, off = (weights(tmp_path / n) for n in ("one", "two", "off"))
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5)
    assert max(float((one[k] - off[k]).abs().max()) for k in one) > 1e-3  # dropout did act
    seeds = {dropout_seed(3, step, row) for step in range(50) for row in range(0, 64, 2)}
    assert len(seeds) == 50 * 32  # every (step, rows) its own seed


def test_a_split_too_short_for_the_context_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"the split holds 11 tokens, too few for --context "
                                         r"10: .* context \+ 2 = 12"):
        global_batch(torch.arange(11), 0, 2, 10, seed=0)
    x, y = global_batch(torch.arange(12), 0, 2, 10, seed=0)  # 12 is enough
    assert torch.equal(x, torch.arange(10).expand(2, 10))
    text = tmp_path / "short.txt"
    text.write_text("to be or not to be, that is the question " * 3, encoding="utf-8")
    with pytest.raises(ValueError, match=r"validation split of text:.*holds 13 tokens, too "
                                         r"few for --context 32"):  # before any training
        main([*TINY, "--data", f"text:{text}", "--eval-batches", "1", "--steps", "1",
              "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match=r"training split of text:.*holds 110 tokens, too "
                                         r"few for --context 200"):
        main([*TINY, "--data", f"text:{text}", "--context", "200", "--steps", "1",
              "--out", str(tmp_path / "x")])


def test_a_trainer_loads_the_history_of_a_command_line_checkpoint(tmp_path):
    from transformer_book.models import build
    from transformer_book.training import Trainer
    main([*TINY, "--steps", "2", "--batch", "2", "--out", str(tmp_path)])
    run_info = json.loads((tmp_path / "run.json").read_text())
    torch.manual_seed(0)
    model = build(run_info["preset"], **run_info["overrides"])
    trainer = Trainer(model, weight_decay=0.1, device="cpu", progress=False)
    trainer.load(tmp_path / CHECKPOINT)
    assert trainer.step == 2
    assert trainer.history["run"] == run_info  # a dict stays a dict, not tuples of letters
    losses = trainer.history["train_loss"]
    assert [s for s, _ in losses] == [1, 2] and all(isinstance(p, tuple) for p in losses)
    ids = torch.randint(0, run_info["overrides"]["vocab_size"], (2, 9))
    trainer.fit(lambda step: (ids[:, :-1], ids[:, 1:]), steps=1)  # and training goes on
    assert trainer.step == 3 and len(trainer.history["lr"]) == 1


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
