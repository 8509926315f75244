"""Time and memory of attention as the sequence grows: explicit, fused, sparse and linear.

    python benchmarks/attention_scaling.py [--quick] [--device cpu|cuda] [--repeats 5]

For B=4, H=8, D=64 and T = 128, 256, ... this times one causal self-attention (forward only)
  - explicit: our matrix-product path, which builds the (B, H, T, T) scores and weights;
  - fused + mask: our fused path (torch's scaled_dot_product_attention) given a mask tensor;
  - fused + is_causal: the same kernel told that the mask is causal, reading no mask tensor;
  - local: sparse attention over a window of 64 keys (efficient_attention.local_attention);
  - strided: the strided pattern of Child et al. with stride ~ sqrt(T);
  - linear: elu+1 linearised attention, causal by blocked prefix sums;
and prints the ratios of the explicit path to the fused one. Memory: the peak that torch's
allocator holds during the call, above what it held before (on CUDA its statistics; on CPU
the allocation events of torch.profiler replayed in order). The explicit path is skipped once
its (B, H, T, T) score matrix would exceed --max-gib. See chapter 12.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from _common import machine, sync, timed

from transformer_book.attention import scaled_dot_product_attention
from transformer_book.efficient_attention import (linear_attention, local_attention,
                                                  strided_attention)
from transformer_book.masks import causal_mask


def peak_bytes(fn, device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def measure(fn, device, repeats):
    fn()
    t = statistics.median(timed(fn, device) for _ in range(repeats))
    return t, peak_bytes(fn, device)


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
    print(f"causal self-attention, forward, B={B}, H={H}, D={D}, float32; "
          "each cell: time ms / peak MiB")
    names = ["explicit", "fused+mask", "fused+flag", "local64", "strided", "linear"]
    print(f"{'T':>6}" + "".join(f"{n:>17}" for n in names) + f"{'explicit/flag':>15}")
    T = 128
    with torch.no_grad():
        while T <= max_T:
            q, k, v = (torch.randn(B, H, T, D, device=device) for _ in range(3))
            mask = causal_mask(T, device=device)
            stride = max(1, round(T ** 0.5))
            fns = {
                "explicit": lambda: scaled_dot_product_attention(q, k, v, mask=mask,
                                                                 fused=False),
                "fused+mask": lambda: scaled_dot_product_attention(q, k, v, mask=mask,
                                                                   fused=True),
                "fused+flag": lambda: scaled_dot_product_attention(q, k, v, is_causal=True),
                "local64": lambda: local_attention(q, k, v, 64),
                "strided": lambda: strided_attention(q, k, v, stride),
                "linear": lambda: linear_attention(q, k, v),
            }
            if B * H * T * T * 4 > args.max_gib * 2 ** 30:
                del fns["explicit"]
            res = {n: measure(fn, device, repeats) for n, fn in fns.items()}
            cells = "".join(f"{res[n][0] * 1e3:>9.1f} /{res[n][1] / 2**20:>6.0f}" if n in res
                            else f"{'(memory)':>17}" for n in names)
            ratio = (f"{res['explicit'][0] / res['fused+flag'][0]:>15.2f}"
                     if "explicit" in res else f"{'-':>15}")
            print(f"{T:>6}{cells}{ratio}", flush=True)
            sync(device)
            T *= 2


if __name__ == "__main__":
    sys.exit(main())
