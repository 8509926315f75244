"""Pretrain a GPT preset from the command line, on one device or many (DDP).

    python -m transformer_book.pretrain_gpt --preset gpt2-tiny --data shakespeare \\
        --steps 500 --batch 16 --global-batch 64 --context 128 --out runs/tiny
    torchrun --nproc_per_node 2 -m transformer_book.pretrain_gpt ...      (same arguments)
    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --rdzv-endpoint HOST:PORT ...

The global batch (sequences per optimizer step) is the same however many processes run:
each step, every process computes ``--batch`` sequences per micro-step for
``global / (batch * processes)`` micro-steps (gradient accumulation), and DDP averages the
gradients. The sequences of step ``s`` are a function of the seed and ``s`` only, split among
processes and micro-steps, so a run on N processes takes the same steps as a run on one (up
to the order of float additions), and a resumed run continues exactly where its checkpoint
stopped. Dropout is seeded per micro-batch by its rows (``dropout_seed``): every process
draws its own masks, and with the same ``--batch`` N processes still equal one. Checkpoints
(safetensors, ``training.save_checkpoint``) hold the uncompiled model, the optimizer and the
step; ``--resume`` continues from ``OUT/checkpoint.safetensors``.

Processes talk over gloo on CPU and nccl on CUDA; only rank 0 shows a progress bar, prints
and writes checkpoints. See chapter 12.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from .models import PRESETS, build, count_params
from .models.gpt import GPT
from .training import adamw_param_groups, load_checkpoint, save_checkpoint, warmup_cosine
from .device import autocast, get_device

__all__ = ["main", "parse_args", "load_corpus", "global_batch", "dropout_seed"]

CHECKPOINT = "checkpoint.safetensors"


def load_corpus(name: str):
    """(train ids, validation ids, tokenizer description) of a character corpus.

    ``shakespeare``: the plays of data.shakespeare (train and validation splits), one token per
    character; ``text:PATH``: any UTF-8 text file, its last 10% held out.
    """
    from .tokenizers import CharTokenizer
    if name == "shakespeare":
        from .data import shakespeare as sh
        train, val = sh.corpus("train"), sh.corpus("validation")
    elif name.startswith("text:"):
        text = Path(name[len("text:"):]).read_text(encoding="utf-8")
        cut = int(len(text) * 0.9)
        train, val = text[:cut], text[cut:]
    else:
        raise ValueError(f"unknown data {name!r}; expected 'shakespeare' or 'text:PATH'")
    tok = CharTokenizer.from_text(train + val)
    as_ids = lambda t: torch.tensor(tok.encode(t), dtype=torch.long)  # noqa: E731
    return as_ids(train), as_ids(val), tok


def global_batch(ids: torch.Tensor, step: int, n: int, T: int, seed: int,
                 split: str = "the split"):
    """The ``n`` (input, target) windows of length ``T`` of optimizer step ``step`` (from 0):
    a function of (seed, step) only, whoever asks. Returns two (n, T) tensors.

    Raises:
        ValueError when ``ids`` is shorter than ``T + 2`` tokens (``split`` names it).
    """
    check_split_length(ids, T, split)
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - T - 1, (n,), generator=g)  # (n,)
    rows = starts[:, None] + torch.arange(T + 1)  # (n, T + 1)
    w = ids[rows]
    return w[:, :-1], w[:, 1:]


def check_split_length(ids: torch.Tensor, T: int, split: str) -> None:
    """Windows of ``T`` inputs and their ``T`` shifted targets start in [0, len - T - 1):
    a split needs at least ``T + 2`` tokens."""
    if len(ids) < T + 2:
        raise ValueError(f"{split} holds {len(ids)} tokens, too few for --context {T}: "
                         f"drawing windows needs at least context + 2 = {T + 2} tokens; "
                         f"use a shorter --context or more text")


def dropout_seed(seed: int, step: int, row: int) -> int:
    """The torch seed of the micro-batch that starts at row ``row`` of optimizer step
    ``step``'s global batch. Dropout masks thus differ between processes and micro-steps
    (each has its own rows: one seed on every rank would repeat the same masks there), do not
    depend on how many processes share the rows, and repeat exactly in a resumed run."""
    return ((seed * 1_000_003 + step) * 1_000_033 + row) % 2 ** 63


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m transformer_book.pretrain_gpt",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpt2-tiny", help="a GPT preset of models.build")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a config field, e.g. --set n_layers=2 (repeatable)")
    ap.add_argument("--data", default="shakespeare", help="'shakespeare' or 'text:PATH'")
    ap.add_argument("--steps", type=int, default=1000, help="optimizer steps of the whole run")
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop (with a checkpoint) after this step; --resume continues")
    ap.add_argument("--batch", type=int, default=16, help="sequences per micro-step and process")
    ap.add_argument("--global-batch", type=int, default=None,
                    help="sequences per optimizer step, all processes (default: batch x processes)")
    ap.add_argument("--context", type=int, default=128, help="tokens per sequence")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50, help="warmup steps of the cosine schedule")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/pretrain_gpt", help="checkpoint directory")
    ap.add_argument("--save-every", type=int, default=0, help="0: only at the end")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/" + CHECKPOINT)
    ap.add_argument("--eval-batches", type=int, default=4, help="validation batches at the end")
    ap.add_argument("--device", default=None, help="default: cuda (this rank's GPU), mps, cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = ap.parse_args(argv)
    for name in ("steps", "batch", "context"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.preset not in PRESETS or PRESETS[args.preset][0] is not GPT:
        gpts = sorted(k for k, (cls, _) in PRESETS.items() if cls is GPT)
        ap.error(f"--preset must be a GPT preset, one of {gpts}; got {args.preset!r}")
    return args


def _overrides(items: list[str], preset: str) -> dict:
    cfg = PRESETS[preset][1]
    types = {f.name: type(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"--set expects FIELD=VALUE with FIELD one of {sorted(types)}, "
                             f"got {item!r}")
        kind = types[key]
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


class _Dist:
    """This process's place: rank, world size, device; a no-op outside torchrun."""

    def __init__(self, device_arg):
        self.on = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
        self.rank = int(os.environ.get("RANK", 0)) if self.on else 0
        self.world = int(os.environ.get("WORLD_SIZE", 1)) if self.on else 1
        local = int(os.environ.get("LOCAL_RANK", 0))
        device = torch.device(device_arg) if device_arg else get_device()
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.device = device
        if self.on:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def close(self):
        if self.on:
            dist.destroy_process_group()


def main(argv=None) -> dict:
    """Run the training; returns {"step", "loss", "val_loss", "seconds"} (rank 0's view)."""
    args = parse_args(argv)
    d = _Dist(args.device)
    try:
        return _train(args, d)
    finally:
        d.close()


def _train(args, d: _Dist) -> dict:
    G = args.global_batch or args.batch * d.world
    if G % (args.batch * d.world):
        raise ValueError(f"--global-batch {G} must be a multiple of --batch x processes = "
                         f"{args.batch} x {d.world}")
    accum = G // (args.batch * d.world)
    train_ids, val_ids, tok = load_corpus(args.data)
    check_split_length(train_ids, args.context, f"the training split of {args.data}")
    if args.eval_batches:  # before training, not after it
        check_split_length(val_ids, args.context, f"the validation split of {args.data}")
    overrides = {"vocab_size": tok.vocab_size,
                 "max_len": max(args.context, PRESETS[args.preset][1].max_len),
                 **_overrides(args.set, args.preset)}
    torch.manual_seed(args.seed)  # the same initial weights on every process
    model = build(args.preset, **overrides).to(d.device)
    opt = torch.optim.AdamW(adamw_param_groups(model, args.weight_decay), lr=args.lr,
                            betas=(0.9, 0.95))
    schedule = warmup_cosine(min(args.warmup, args.steps), args.steps, min_ratio=0.1)
    out = Path(args.out)
    step, history, elapsed = 0, {"train_loss": []}, 0.0
    if args.resume and (out / CHECKPOINT).is_file():
        meta = load_checkpoint(out / CHECKPOINT, model, opt)
        step, history = meta["step"], meta["history"]
        elapsed = float(meta.get("elapsed", 0.0))
        was = history.get("run", {}).get("global_batch", G)
        if was != G:
            raise ValueError(f"the checkpoint was trained with global batch {was}, "
                             f"this run asks for {G}")
    run_info = {"preset": args.preset, "overrides": overrides, "data": args.data,
                "global_batch": G, "context": args.context, "chars": "".join(tok.itos)}
    history["run"] = run_info
    if d.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps(run_info, indent=1))
        print(f"{args.preset}: {count_params(model):,} parameters; "
              f"{d.world} process(es) on {d.device}; global batch {G} = {args.batch} x "
              f"{d.world} x {accum} accumulation; {args.steps} steps from step {step}",
              flush=True)

    ddp = nn.parallel.DistributedDataParallel(model) if d.on else model
    fwd = torch.compile(ddp) if args.compile else ddp
    stop = min(args.steps, args.stop_at) if args.stop_at else args.steps

    def save():
        if d.rank == 0:
            tmp = out / (CHECKPOINT + ".tmp")
            save_checkpoint(tmp, model, opt, step=step, history=history,
                            elapsed=elapsed + time.perf_counter() - start)
            os.replace(tmp, out / CHECKPOINT)  # never a half-written checkpoint

    start = time.perf_counter()
    bar = tqdm(total=stop, initial=step, desc="training",
               **({"disable": True} if d.rank != 0 else {}))
    model.train()
    loss_sum = torch.zeros((), device=d.device)
    while step < stop:
        for group in opt.param_groups:
            group["lr"] = args.lr * schedule(step + 1)
        x_all, y_all = global_batch(train_ids, step, G, args.context, args.seed)  # (G, T)
        loss_sum.zero_()
        for a in range(accum):
            lo = (a * d.world + d.rank) * args.batch  # this process's rows of the global batch
            torch.manual_seed(dropout_seed(args.seed, step, lo))
            x = x_all[lo:lo + args.batch].to(d.device, non_blocking=True)
            y = y_all[lo:lo + args.batch].to(d.device, non_blocking=True)
            last = a == accum - 1
            sync = ddp.no_sync() if d.on and not last else contextlib.nullcontext()
            with sync:
                with autocast(d.device):
                    loss = fwd(x, targets=y).loss / accum
                loss.backward()
            loss_sum += loss.detach()
        if args.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if d.on:
            dist.all_reduce(loss_sum)
            loss_sum /= d.world
        value = loss_sum.item()
        history["train_loss"].append((step, value))
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        if args.save_every and step % args.save_every == 0:
            save()
    bar.close()
    save()
    seconds = elapsed + time.perf_counter() - start
    result = {"step": step, "loss": history["train_loss"][-1][1] if history["train_loss"]
              else None, "seconds": seconds, "val_loss": None}
    if d.rank == 0 and args.eval_batches:
        model.eval()
        with torch.no_grad(), autocast(d.device):
            losses = [float(model(x.to(d.device), targets=y.to(d.device)).loss)
                      for x, y in (global_batch(val_ids, i, args.batch, args.context, 7919)
                                   for i in range(args.eval_batches))]
        result["val_loss"] = sum(losses) / len(losses)
        print(f"step {step}: train loss {result['loss']:.4f}, validation loss "
              f"{result['val_loss']:.4f} ({result['val_loss'] / math.log(2):.3f} bits/char); "
              f"{seconds:.1f} s of training", flush=True)
    return result


if __name__ == "__main__":
    main()
