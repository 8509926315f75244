"""Is training unchanged to the last bit? The package at a reference git revision vs the working tree.

    python benchmarks/training_bitwise.py [--ref HEAD] [--steps 4]

A change meant only for speed must not change a training: chapters assert results of trainings
of hundreds of steps, and a different summation order in one product (a last-digit difference)
grows over those steps into a different result. This script exports the package as it was at
``--ref`` (``git archive``) into a temporary folder, runs the same small trainings in two fresh
processes, one importing that copy and one the working tree's ``src/``, and compares every
loss and every weight with ``torch.equal``: bitwise, no tolerance.

The trainings (forward, loss, backward, AdamW, dropout on where the model has it, so that the
random draws are compared too): GPT-2 (pre-norm) and GPT-1 (post-norm) language models, the
2017 encoder-decoder Transformer, BERT's masked LM with a padding mask, T5 (relu) and T5 v1.1
(gated GELU, untied head), and a batched evaluation loss after training (inference path).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r'''
import dataclasses, sys, torch
from transformer_book.models import (GPT, GPT_PRESETS, Transformer, TRANSFORMER_PRESETS,
                                     BertForMaskedLM, BERT_PRESETS, T5, T5_PRESETS)
torch.set_num_threads(1)
steps, out_path = int(sys.argv[1]), sys.argv[2]
R = dataclasses.replace
V, B, T = 96, 4, 24

def data(g, pad=False):
    x = torch.randint(1, V, (B, T), generator=g)
    y = torch.randint(1, V, (B, T), generator=g)
    if pad:
        x[0, T - 5:] = 0
    return x, y

def run(name, model, call):
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):
        loss = call(model, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    model.eval()
    with torch.no_grad():
        losses.append(call(model, torch.Generator().manual_seed(3)).detach())
    return name, {"losses": torch.stack(losses), "state": model.state_dict()}

def lm(m, g):
    x, y = data(g)
    return m(x, targets=y).loss

def seq2seq(m, g):
    x, y = data(g, pad=True)
    return m(x, y, targets=torch.roll(y, -1, 1)).loss

def mlm(m, g):
    x, y = data(g, pad=True)
    mask = x != 0
    return m(x, attention_mask=mask, targets=torch.where(mask, y, -100)).loss

torch.manual_seed(0)
gpt2 = R(GPT_PRESETS["gpt2-tiny"], vocab_size=V, max_len=32, dropout=0.1)
gpt1 = R(GPT_PRESETS["gpt1-tiny"], vocab_size=V, max_len=32, dropout=0.1)
tr = R(TRANSFORMER_PRESETS["transformer-tiny"], vocab_size=V, max_len=32, attn_dropout=0.1)
bert = R(BERT_PRESETS["bert-tiny"], vocab_size=V, max_len=32, dropout=0.1, n_layers=2)
t5 = R(T5_PRESETS["t5-small"], vocab_size=V, d_model=64, n_heads=4, d_head=16, d_ff=128,
       n_layers=2, dropout=0.1)
t5g = R(t5, activation="gated-gelu_tanh", tie_embeddings=False)
results = {}
for name, build, call in (("gpt2", lambda: GPT(gpt2), lm), ("gpt1", lambda: GPT(gpt1), lm),
                          ("transformer", lambda: Transformer(tr), seq2seq),
                          ("bert-mlm", lambda: BertForMaskedLM(bert), mlm),
                          ("t5", lambda: T5(t5), seq2seq), ("t5-gated", lambda: T5(t5g), seq2seq)):
    torch.manual_seed(0)
    k, v = run(name, build(), call)
    results[k] = v
torch.save(results, out_path)
'''


def train(src: Path, steps: int, out: Path) -> dict:
    import torch
    env = dict(os.environ, PYTHONPATH=str(src))
    subprocess.run([sys.executable, "-c", WORKER, str(steps), str(out)], env=env, check=True)
    return torch.load(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="HEAD", help="git revision of the reference package")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args(argv)
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref, "src"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        ref = train(tmp / "src", args.steps, tmp / "ref.pt")
        new = train(ROOT / "src", args.steps, tmp / "new.pt")
    bad = 0
    for name in ref:
        r, n = ref[name], new[name]
        same_loss = torch.equal(r["losses"], n["losses"])
        diff = [k for k in r["state"] if not torch.equal(r["state"][k], n["state"][k])]
        ok = same_loss and not diff and r["state"].keys() == n["state"].keys()
        bad += not ok
        print(f"{name:12s} losses {'equal' if same_loss else 'DIFFER'}  "
              f"{len(r['state'])} tensors, {len(diff)} differ  "
              f"(last train loss {float(r['losses'][-2]):.6f}, eval {float(r['losses'][-1]):.6f})"
              + ("" if ok else f"  {diff[:4]}"))
    print(f"{bad} model(s) CHANGED vs {args.ref}" if bad else
          f"every training bitwise unchanged vs {args.ref}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
