"""Generation speed: 200 new tokens, ours with and without the KV cache vs transformers' generate.

    python benchmarks/generation.py [--quick] [--new 200] [--repeats 5] [--runs 2] [--device cpu|cuda]

Greedy decoding of one sequence after a short prompt, for GPT-2 (the small training config:
6 layers, 6 heads, width 384, vocabulary 65) and for T5 (4 + 4 layers, width 256, a source of
32 tokens). Ours comes from the transformers model through ``from_hf`` (same weights); the
tokens of the three ways are checked to be the same before anything is timed. The weights are
drawn with std 0.2 rather than 0.02 so that greedy choices are not near-ties that rounding could
flip. Each time is the median of ``--repeats`` interleaved generations; the comparison is
repeated ``--runs`` times.
"""
from __future__ import annotations

import argparse
import sys

import torch

from _common import interleaved, machine

from transformer_book.decoding import greedy
from transformer_book.pretrained import from_hf


def gpt2_models(device):
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=65, n_positions=256, n_embd=384, n_layer=6, n_head=6,
                     initializer_range=0.2)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa").eval()
    return from_hf(hf).to(device).eval(), hf.to(device)


def t5_models(device):
    from transformers import T5Config, T5ForConditionalGeneration
    cfg = T5Config(vocab_size=128, d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_heads=8,
                   decoder_start_token_id=0, initializer_factor=1.0)
    torch.manual_seed(0)
    hf = T5ForConditionalGeneration._from_config(cfg).eval()
    return from_hf(hf).to(device).eval(), hf.to(device)


def compare(name, ours, hf, prompt, src, n, args, device):
    ones = torch.ones_like(src if src is not None else prompt)
    kw = dict(do_sample=False, num_beams=1, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)

    def hf_gen():
        if src is None:
            return hf.generate(prompt, attention_mask=ones, **kw)
        return hf.generate(input_ids=src, attention_mask=ones, **kw)

    fns = {"cache": lambda: greedy(ours, prompt, n, src=src),
           "recompute": lambda: greedy(ours, prompt, n, src=src, use_cache=False),
           "transformers": hf_gen}
    with torch.no_grad():
        outs = {k: f() for k, f in fns.items()}
    ref = outs["transformers"]
    for k, o in outs.items():
        assert o.shape == ref.shape and torch.equal(o, ref), f"{name}: {k} differs from generate"
    print(f"\n{name}: {n} new tokens, same tokens from all three (checked)")
    print(f"{'run':>4} {'cache s':>8} {'recompute s':>12} {'HF s':>7} {'recompute/cache':>16} "
          f"{'HF/cache':>9}")
    for r in range(args.runs):
        with torch.no_grad():
            t = interleaved(fns, args.repeats, 1, device)
        print(f"{r + 1:>4} {t['cache']:>8.3f} {t['recompute']:>12.3f} {t['transformers']:>7.3f} "
              f"{t['recompute'] / t['cache']:>16.2f} {t['transformers'] / t['cache']:>9.2f}",
              flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--new", type=int, default=200, help="new tokens")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--model", default="both", choices=["gpt2", "t5", "both"])
    ap.add_argument("--quick", action="store_true", help="3 repeats, 1 run")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.runs = 3, 1
    device = torch.device(args.device)
    print(machine())
    print("ratios > 1: the KV cache is that many times faster")
    if args.model in ("gpt2", "both"):
        ours, hf = gpt2_models(device)
        prompt = torch.randint(0, 65, (1, 8), generator=torch.Generator().manual_seed(1))
        compare("GPT-2", ours, hf, prompt.to(device), None, args.new, args, device)
    if args.model in ("t5", "both"):
        ours, hf = t5_models(device)
        src = torch.randint(2, 128, (1, 32), generator=torch.Generator().manual_seed(1))
        start = torch.zeros(1, 1, dtype=torch.long)
        compare("T5", ours, hf, start.to(device), src.to(device), args.new, args, device)


if __name__ == "__main__":
    sys.exit(main())
