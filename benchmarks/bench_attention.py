"""Speed of the package's attention paths, as ratios against references run side by side.

    python benchmarks/bench_attention.py [--device cpu|cuda] [--repeats 20]

Prints, for several sequence lengths, the time of
  - our explicit path (matrix products + softmax, returns the weights),
  - our fused path (torch.nn.functional.scaled_dot_product_attention underneath), with the
    causal mask as a tensor and as the is_causal flag,
  - our MultiHeadAttention module vs torch.nn.MultiheadAttention with the same weights,
  - greedy decoding of a small GPT with the KV cache vs recomputing the prefix,
each as a ratio to its reference. Ratios, not seconds, are the result: seconds depend on the machine.
"""
from __future__ import annotations

import argparse
import time

import torch

import transformer_book as tb
from transformer_book.decoding import greedy
from transformer_book.models import build


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=str(tb.get_device()))
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    B, H, D = 4, 8, 64
    C = H * D
    print(f"device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'T':>6} {'explicit/torch_sdpa':>20} {'fused(mask)/torch':>18} "
          f"{'fused(is_causal)/torch':>23} {'ourMHA/torchMHA':>16}")
    mha = tb.MultiHeadAttention(C, H).to(dev).eval()
    ref = torch.nn.MultiheadAttention(C, H, batch_first=True).to(dev).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
        ref.out_proj.load_state_dict(mha.out_proj.state_dict())
    with torch.no_grad():
        for T in (64, 256, 1024):
            q, k, v = (torch.randn(B, H, T, D, device=dev) for _ in range(3))
            mask = tb.causal_mask(T, device=dev)
            t_ref = timeit(lambda: torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=True), args.repeats)
            t_exp = timeit(lambda: tb.scaled_dot_product_attention(
                q, k, v, mask=mask, return_weights=True), args.repeats)
            t_fus = timeit(lambda: tb.scaled_dot_product_attention(q, k, v, mask=mask), args.repeats)
            t_fc = timeit(lambda: tb.scaled_dot_product_attention(q, k, v, is_causal=True),
                          args.repeats)
            x = torch.randn(B, T, C, device=dev)
            t_mha = timeit(lambda: mha(x, mask=mask), args.repeats)
            bool_mask = tb.to_torch_mha(mask[0, 0])
            t_tmha = timeit(lambda: ref(x, x, x, attn_mask=bool_mask, need_weights=False), args.repeats)
            print(f"{T:>6} {t_exp / t_ref:>20.2f} {t_fus / t_ref:>18.2f} {t_fc / t_ref:>23.2f} "
                  f"{t_mha / t_tmha:>16.2f}")

    model = build("gpt2-tiny", vocab_size=256, max_len=512).to(dev).eval()
    prompt = torch.randint(0, 256, (1, 16), device=dev)
    for n in (64, 256):
        t_cache = timeit(lambda: greedy(model, prompt, n), max(1, args.repeats // 5))
        t_full = timeit(lambda: greedy(model, prompt, n, use_cache=False), max(1, args.repeats // 5))
        print(f"greedy {n} tokens: with KV cache / recompute = {t_cache / t_full:.2f}")


if __name__ == "__main__":
    main()
