"""Time and memory of attention as the sequence grows: explicit vs fused, causal mask vs flag.

    python benchmarks/attention_scaling.py [--quick] [--device cpu|cuda] [--repeats 5]

For B=4, H=8, D=64 and T = 128, 256, ... this times one causal self-attention (forward only)
  - explicit: our matrix-product path, which builds the (B, H, T, T) scores and weights;
  - fused + mask: our fused path (torch's scaled_dot_product_attention) given a mask tensor;
  - fused + is_causal: the same kernel told that the mask is causal, reading no mask tensor;
and prints the ratios to the last. Memory: on CUDA the measured peak of each call
(torch.cuda.max_memory_allocated); on CPU, where torch keeps no allocator statistics, the
size of the (B, H, T, T) score matrix the explicit path must hold (float32), which is what
stops it first. The explicit path is skipped once that matrix exceeds --max-gib.
Sparse (local window, strided) and linearised attention will join this table when the package
has them (chapter 12).
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch

from _common import machine, sync, timed

from transformer_book.attention import scaled_dot_product_attention
from transformer_book.masks import causal_mask


def measure(fn, device, repeats):
    fn()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t = statistics.median(timed(fn, device) for _ in range(repeats))
    peak = torch.cuda.max_memory_allocated() - base if device.type == "cuda" else None
    return t, peak


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-T", type=int, default=None)
    ap.add_argument("--max-gib", type=float, default=1.0,
                    help="skip the explicit path beyond this score-matrix size")
    ap.add_argument("--quick", action="store_true", help="T up to 2048, 3 repeats")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    max_T = args.max_T or (2048 if args.quick else 8192 if device.type == "cpu" else 32768)
    repeats = 3 if args.quick else args.repeats
    B, H, D = 4, 8, 64
    print(machine())
    print(f"causal self-attention, forward, B={B}, H={H}, D={D}, float32; times in ms")
    mem = "peak MiB (explicit / fused)" if device.type == "cuda" else "scores MiB"
    print(f"{'T':>6} {'explicit':>9} {'fused+mask':>11} {'fused+flag':>11} "
          f"{'explicit/flag':>14} {'mask/flag':>10} {mem:>28}")
    T = 128
    with torch.no_grad():
        while T <= max_T:
            q, k, v = (torch.randn(B, H, T, D, device=device) for _ in range(3))
            mask = causal_mask(T, device=device)
            score_bytes = B * H * T * T * 4
            t_flag, p_flag = measure(lambda: scaled_dot_product_attention(
                q, k, v, is_causal=True), device, repeats)
            t_mask, _ = measure(lambda: scaled_dot_product_attention(
                q, k, v, mask=mask, fused=True), device, repeats)
            if score_bytes <= args.max_gib * 2 ** 30:
                t_exp, p_exp = measure(lambda: scaled_dot_product_attention(
                    q, k, v, mask=mask, fused=False), device, repeats)
                exp = f"{t_exp * 1e3:>9.2f}"
                ratio = f"{t_exp / t_flag:>14.2f}"
            else:
                exp, ratio, p_exp = f"{'(memory)':>9}", f"{'-':>14}", None
            if device.type == "cuda":
                m = f"{(p_exp or 0) / 2**20:>12.0f} / {p_flag / 2**20:>12.0f}"
            else:
                m = f"{score_bytes / 2**20:>28.0f}"
            print(f"{T:>6} {exp} {t_mask * 1e3:>11.2f} {t_flag * 1e3:>11.2f} {ratio} "
                  f"{t_mask / t_flag:>10.2f} {m}", flush=True)
            sync(device)
            T *= 2


if __name__ == "__main__":
    sys.exit(main())
