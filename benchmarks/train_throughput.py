"""Training-step throughput: our GPT-2 vs transformers' GPT2LMHeadModel, same config, same weights.

    python benchmarks/train_throughput.py [--quick] [--steps 20] [--runs 2] [--device cpu|cuda]
        [--config small|wide|both] [--compile]

One training step = forward, loss, backward, AdamW update. Both models are built in this
process, ours from the transformers model through ``from_hf`` (so the weights are the same: the
first losses are checked to agree), and their steps are interleaved; each figure is the median
of ``--steps`` steps after warm-up, and the whole comparison is repeated ``--runs`` times because
runs on a shared machine vary by about 10%.

Printed: tokens/s of each, the ratio ours / transformers', the model FLOPs per token (counted
below), the matmul peak of this machine measured in the same run (an n x n x n product), and the
model-FLOP utilisation (MFU) of each: achieved FLOP/s over that peak.
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch
import torch.nn.functional as F

from _common import interleaved, machine, matmul_peak

from transformer_book.pretrained import from_hf
from transformer_book.device import autocast

CONFIGS = {  # name: (n_layers, n_heads, d_model, context T, batch B, vocabulary V)
    "small": (6, 6, 384, 256, 8, 65),
    "wide": (6, 12, 768, 256, 4, 65),
}


def flops_per_token(L: int, C: int, T: int, V: int, d_ff: int) -> int:
    """Training FLOPs per token: 3 x the forward's (backward = 2 x forward), counting the matrix
    products only: per layer the q, k, v and output projections (2 * 4 C^2), the FFN
    (2 * 2 C d_ff) and attention's q k^T and weights @ v (2 * 2 T C, the full square, as is
    customary, although a causal kernel may skip half); plus the output layer (2 C V)."""
    per_layer = 2 * 4 * C * C + 2 * 2 * C * d_ff + 2 * 2 * T * C
    return 3 * (L * per_layer + 2 * C * V)


def make_models(L, H, C, T, V, device):
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=V, n_positions=T, n_embd=C, n_layer=L, n_head=H,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa")
    ours = from_hf(hf)
    return ours.to(device).train(), hf.to(device).train()


def step_fn(model, x, y, hf: bool, device):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    V = model.config.vocab_size

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            if hf:
                logits = model(x).logits  # (B, T, V)
                loss = F.cross_entropy(logits.view(-1, V).float(), y.view(-1))
            else:
                loss = model(x, targets=y).loss
        loss.backward()
        opt.step()
        return loss
    return step


def run_config(name, args, device, peak):
    L, H, C, T, B, V = CONFIGS[name]
    if args.quick and name == "wide":
        B = 2
    ours, hf = make_models(L, H, C, T, V, device)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (B, T), generator=g).to(device)
    y = torch.randint(0, V, (B, T), generator=g).to(device)
    with torch.no_grad():  # same weights, same function: the losses agree before any step
        lo = ours(x, targets=y).loss
        lh = F.cross_entropy(hf(x).logits.view(-1, V), y.view(-1))
    assert torch.allclose(lo, lh, atol=1e-4), (float(lo), float(lh))
    if args.compile:
        ours, hf = torch.compile(ours), torch.compile(hf)
    fns = {"ours": step_fn(ours, x, y, False, device), "transformers": step_fn(hf, x, y, True, device)}
    fpt = flops_per_token(L, C, T, V, 4 * C)
    print(f"\nconfig {name}: {L} layers, {H} heads, width {C}, context {T}, batch {B}, "
          f"vocabulary {V}; {fpt / 1e6:.1f} MFLOP per token (training)")
    print(f"{'run':>4} {'ours tok/s':>11} {'HF tok/s':>10} {'ours/HF':>8} {'MFU ours':>9} "
          f"{'MFU HF':>7}")
    ratios = []
    for r in range(args.runs):
        t = interleaved(fns, args.steps, args.warmup, device)
        tok_o, tok_h = B * T / t["ours"], B * T / t["transformers"]
        ratios.append(tok_o / tok_h)
        print(f"{r + 1:>4} {tok_o:>11.0f} {tok_h:>10.0f} {tok_o / tok_h:>8.2f} "
              f"{tok_o * fpt / peak:>9.0%} {tok_h * fpt / peak:>7.0%}", flush=True)
    return ratios


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--config", default="both", choices=["small", "wide", "both"])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run and model")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer steps, small batch for 'wide'")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = min(args.steps, 8), 2
    device = torch.device(args.device)
    print(machine())
    peak = matmul_peak(device)
    print(f"matmul peak (1024^3, fp32): {peak / 1e9:.1f} GFLOP/s")
    names = ["small", "wide"] if args.config == "both" else [args.config]
    for name in names:
        run_config(name, args, device, peak)
    print(f"\nmatmul peak at the end: {matmul_peak(device) / 1e9:.1f} GFLOP/s (MFU above uses "
          "the one at the start)")


if __name__ == "__main__":
    sys.exit(main())
