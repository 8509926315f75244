"""Training loop, learning-rate schedules and checkpoints. See chapter 6.

``Trainer`` is deliberately small: Adam(W), a schedule, gradient clipping, autocast on CUDA
only (bf16 where the GPU supports it, else fp16 with a gradient scaler), a tqdm bar with the
live loss, an evaluation hook, and checkpoints in safetensors (plain tensors and JSON: loading
one never unpickles anything).

Schedules take the optimizer step number, counting from 1: ``schedule(1)`` is the multiplier
of the first optimizer step, and a warmup of ``w`` steps peaks exactly at ``schedule(w)``.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .checks import deferred
from .device import autocast, autocast_dtype, get_device
from .losses import label_smoothed_cross_entropy  # the default loss with label_smoothing > 0

__all__ = ["Trainer", "adamw_param_groups", "noam_schedule", "warmup_cosine",
           "label_smoothed_cross_entropy", "save_checkpoint", "load_checkpoint"]


def noam_schedule(d_model: int, warmup_steps: int = 4000):
    """The 2017 paper's rate: d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).

    Returns step -> learning rate (use it with base lr 1.0). Steps are optimizer steps counted
    from 1: the rate rises linearly up to step ``warmup_steps``, its peak, then decays as
    1/sqrt(step).
    """
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

    def rate(step: int) -> float:
        if step < 1:
            raise ValueError(f"schedules count optimizer steps from 1, got step {step}")
        return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)
    return rate


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.0):
    """Linear warmup to 1 at step ``warmup_steps``, then a cosine down to ``min_ratio`` at
    step ``total_steps`` (and after it).

    Returns step -> multiplier of the base learning rate; steps are optimizer steps counted
    from 1, so step ``k <= warmup_steps`` gets ``k / warmup_steps``.
    """
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got "
                         f"total_steps={total_steps}, warmup_steps={warmup_steps}")

    def mult(step: int) -> float:
        if step < 1:
            raise ValueError(f"schedules count optimizer steps from 1, got step {step}")
        if step <= warmup_steps:
            return step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return mult


# ----------------------------------------------------------------------------- checkpoints

def _unique_state(model: nn.Module) -> tuple[dict, dict]:
    """State dict without aliases (tied weights are stored once) and the alias map."""
    state, aliases, seen = {}, {}, {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), t.shape, t.stride()) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        state[name] = t.detach().contiguous().cpu()
    return state, aliases


def save_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, step: int = 0,
                    history=None, rng: bool = True, elapsed: float = 0.0) -> None:
    """Write the model (and optionally optimizer, schedule, the Python, NumPy and torch RNG
    states, and the training time so far) to one safetensors file."""
    model = getattr(model, "_orig_mod", model)  # the uncompiled module's names
    state, aliases = _unique_state(model)
    tensors = {f"model.{k}": v for k, v in state.items()}
    meta = {"step": step, "aliases": aliases, "history": history or {}, "elapsed": elapsed}
    if optimizer is not None:
        osd = optimizer.state_dict()
        for pid, pstate in osd["state"].items():
            for k, v in pstate.items():
                v = v if isinstance(v, torch.Tensor) else torch.tensor(v)
                tensors[f"optim.{pid}.{k}"] = v.detach().contiguous().cpu()
        meta["param_groups"] = osd["param_groups"]
    if scheduler is not None:
        meta["scheduler"] = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    if rng:
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        version, words, gauss = random.getstate()
        tensors["rng.python"] = torch.tensor(words, dtype=torch.int64)
        meta["rng_python"] = [version, gauss]
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
        meta["rng_numpy"] = [kind, int(pos), int(has_gauss), float(cached)]
    save_file(tensors, str(path), metadata={"book": json.dumps(meta)})


def _history_from_json(history: dict) -> dict:
    """Undo JSON's one change to a history: a list of (step, value) tuples came back as a list
    of lists. Entries that are not lists (a dict, a number) are kept as they are."""
    if not isinstance(history, dict):
        raise ValueError(f"a checkpoint's history must be a dict, got {type(history).__name__}")
    return {k: [tuple(x) if isinstance(x, list) else x for x in v] if isinstance(v, list)
            else v for k, v in history.items()}


def load_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, rng: bool = True) -> dict:
    """Load what ``save_checkpoint`` wrote; returns its metadata (step, history).

    The history comes back as it was saved: JSON turns the (step, value) pairs of its lists
    into lists, which are made tuples again; anything else (a dict such as pretrain_gpt's
    "run", a number, a string) is returned unchanged.

    Everything is checked before anything changes: a checkpoint that does not fit leaves the
    model, the optimizer and the RNG states as they were.

    Raises:
        FileNotFoundError; ValueError for a file that is not one of our checkpoints, or naming
        the first tensor that is missing, unexpected, or of the wrong shape.
    """
    from safetensors import safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("book")
        tensors = load_file(str(path))
    except Exception as e:  # safetensors' own error types differ between versions
        raise ValueError(f"{path} is not a safetensors checkpoint: {e}") from None
    if raw is None:
        raise ValueError(f"{path} is a safetensors file but not a checkpoint written by "
                         "save_checkpoint (its metadata has no 'book' entry)")
    meta = json.loads(raw)
    meta["history"] = _history_from_json(meta.get("history") or {})
    model = getattr(model, "_orig_mod", model)
    own = model.state_dict()
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    for alias, target in meta["aliases"].items():
        if target in state:
            state[alias] = state[target]
    for name in own:
        if name not in state:
            raise ValueError(f"checkpoint {path} has no tensor for {name!r} {tuple(own[name].shape)}")
        if state[name].shape != own[name].shape:
            raise ValueError(f"checkpoint tensor {name!r} has shape {tuple(state[name].shape)}, "
                             f"the model expects {tuple(own[name].shape)}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise ValueError(f"checkpoint {path} has tensor {extra[0]!r} that the model does not have")
    if optimizer is not None:
        if "param_groups" not in meta:
            raise ValueError(f"checkpoint {path} holds no optimizer state")
        theirs = [len(g["params"]) for g in meta["param_groups"]]
        ours = [len(g["params"]) for g in optimizer.param_groups]
        if theirs != ours:
            raise ValueError(f"checkpoint {path} has optimizer groups of {theirs} parameters, "
                             f"the optimizer has {ours}")
        opt_state = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = v
    # everything fits: now change things
    model.load_state_dict(state)
    if optimizer is not None:
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict({**scheduler.state_dict(), **meta["scheduler"]})
    if rng and "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        if "rng.python" in tensors:
            version, gauss = meta["rng_python"]
            random.setstate((version, tuple(tensors["rng.python"].tolist()), gauss))
        if "rng.numpy" in tensors:
            kind, pos, has_gauss, cached = meta["rng_numpy"]
            np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos,
                                 has_gauss, cached))
    return meta


# ----------------------------------------------------------------------------- the trainer

def adamw_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's two parameter groups: weight decay on the matrices (linear and embedding
    weights), none on the vectors (biases, norm gains), which decay would only pull towards
    zero. Frozen parameters (requires_grad False) are left out."""
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not weight_decay >= 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def _takes_targets(model: nn.Module) -> bool:
    """Whether ``model.forward`` accepts ``targets=`` (every model of the book does)."""
    model = getattr(model, "_orig_mod", model)
    try:
        return "targets" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _read_batch(batch):
    """(args, kwargs, targets) of the model call the default loss makes for ``batch``: a dict
    with "targets", or a pair (inputs, targets); see ``Trainer``."""
    if isinstance(batch, dict):
        kwargs = dict(batch)
        if "targets" not in kwargs:
            raise ValueError(f"a dict batch needs a 'targets' entry for the default loss, "
                             f"got keys {sorted(batch)}")
        return (), kwargs, kwargs.pop("targets")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, targets = batch
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"a pair batch is (inputs, targets) with one input tensor, got "
                            f"inputs of type {type(inputs).__name__}: pass several inputs "
                            "as a dict naming each one")
        return (inputs,), {}, targets
    what = (f"a {type(batch).__name__} of {len(batch)}"
            if isinstance(batch, (tuple, list)) else type(batch).__name__)
    raise TypeError(f"get_batch must return (inputs, targets) or a dict that names every "
                    f"input and the targets, got {what}: for more than one input use a dict, "
                    "e.g. {'input_ids': ids, 'attention_mask': mask, 'targets': y}, so that "
                    "no input is read as another (a mask passed where segment ids go)")


class Trainer:
    """Train a model on batches from ``get_batch(step)``.

    Args:
        model: any nn.Module; it is moved to ``device`` (default: ``get_device()``).
        lr: base learning rate (with ``noam_schedule`` use 1.0: the schedule is the rate).
        schedule: None (constant) or a callable step -> multiplier of ``lr``.
        grad_clip: max global gradient norm (None: no clipping).
        label_smoothing: epsilon of the default loss.
        loss_fn: loss_fn(model, batch) -> scalar. Default: the model's own loss (when it takes
            ``targets`` and ``label_smoothing`` is 0), otherwise label-smoothed cross-entropy
            of the output's logits against the targets (ignore_index -100). The default reads
            two forms of batch, and no other:
              a dict, every input named as the model's forward names it, and "targets":
                {"input_ids": ids, "attention_mask": m, "targets": y} -> model(**inputs,
                targets=y); an encoder-decoder: {"src": s, "tgt_in": t, "targets": y};
              a pair (inputs, targets), one input tensor: model(inputs, targets=targets).
            A longer tuple is refused: its middle entries have no names, and a model would
            have to guess what each one is (a mask read as segment ids trains without a word).
        eval_fn: eval_fn(model) -> dict of numbers, run every ``eval_every`` steps and at the end.
    Attributes:
        history: dict of lists of (step, value): "train_loss", "lr", and eval_fn's keys.
        step: optimizer steps taken so far.
        defer_checks: None (default): on an accelerator, a step's input checks (token ids,
            targets, mask values) are read together with its loss, one host sync per step
            (``checks.deferred``); on the CPU each is read where it is made. True or False
            forces either.
    """

    def __init__(self, model: nn.Module, lr: float = 3e-4, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, schedule=None, grad_clip: float | None = 1.0,
                 label_smoothing: float = 0.0, loss_fn=None, device=None, eval_fn=None,
                 eval_every: int | None = None, progress: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be None or > 0, got {grad_clip!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}")
        self.device = torch.device(device) if device is not None else get_device()
        self.model = model.to(self.device)
        self.optimizer = torch.optim.AdamW(adamw_param_groups(model, weight_decay), lr=lr,
                                           betas=betas, eps=eps)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be None or a callable step -> multiplier, "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule
        # LambdaLR counts from 0 (its value at 0 sets the first step's rate); our schedules
        # count optimizer steps from 1, so the first step runs at schedule(1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, (lambda s: schedule(s + 1)) if schedule is not None
            else (lambda s: 1.0))
        # fp16 autocast (a GPU without bf16, such as Colab's T4) needs a gradient scaler
        self.amp_dtype = autocast_dtype(self.device)
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if self.amp_dtype == torch.float16 else None)
        self.grad_clip, self.label_smoothing = grad_clip, label_smoothing
        self.loss_fn, self.eval_fn, self.eval_every = loss_fn, eval_fn, eval_every
        self.progress = progress
        self.step = 0
        self.history: dict[str, list] = {"train_loss": [], "lr": []}
        self.seconds = 0.0  # wall time spent inside fit()
        # None: read each step's input checks with its loss (one host sync) on an accelerator,
        # at once on the CPU; True or False forces either (checks.py)
        self.defer_checks: bool | None = None

    def compute_loss(self, batch) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(self.model, batch)
        args, kwargs, targets = _read_batch(batch)
        own = self.label_smoothing == 0 and _takes_targets(self.model)
        if own:
            kwargs["targets"] = targets
        out = self.model(*args, **kwargs)
        if own and getattr(out, "loss", None) is not None:
            return out.loss
        logits = getattr(out, "logits", out)
        logits = logits[0] if isinstance(logits, tuple) else logits
        return label_smoothed_cross_entropy(logits, targets, self.label_smoothing)

    def _to_device(self, batch):
        """Every tensor of the batch (a tensor, or a dict, tuple or list of them) on the
        Trainer's device."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device)
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        if isinstance(batch, (tuple, list)):
            return tuple(self._to_device(b) for b in batch)
        return batch

    def _checks(self):
        """Where the input checks of a step are read: with the loss in one transfer on an
        accelerator (``checks.deferred``), at once on the CPU (where a read costs nothing)."""
        defer = (self.defer_checks if self.defer_checks is not None
                 else self.device.type != "cpu")
        return deferred(include_cpu=True) if defer else contextlib.nullcontext()

    def evaluate(self) -> dict:
        if self.eval_fn is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                metrics = self.eval_fn(self.model)
        finally:  # an eval_fn that raises must not leave the model in eval mode
            self.model.train(was_training)
        for k, v in metrics.items():
            self.history.setdefault(k, []).append((self.step, float(v)))
        return metrics

    def fit(self, get_batch, steps: int | None = None, max_seconds: float | None = None) -> dict:
        """Take up to ``steps`` optimizer steps (counting on from ``self.step``), stopping
        early after ``max_seconds``. Returns the history."""
        if steps is None and max_seconds is None:
            raise ValueError("fit needs steps, max_seconds, or both")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or steps < 0):
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        target = self.step + steps if steps is not None else None
        start = time.perf_counter()
        # pass `disable` only to switch the bar off, so that TQDM_DISABLE=1 (CI) still works
        bar = tqdm(total=steps, desc="training", leave=False,
                   **({} if self.progress else {"disable": True}))
        self.model.train()
        while target is None or self.step < target:
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            batch = self._to_device(get_batch(self.step))
            with self._checks() as pending:  # see checks.py
                with autocast(self.device):
                    loss = self.compute_loss(batch)
                # the step's one read from the device: the loss, and every input check
                loss_value = pending.read(loss) if pending is not None else loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at step {self.step}")
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:  # fp16: scale the loss, unscale before clipping
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            lr = self.optimizer.param_groups[0]["lr"]
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self.history["train_loss"].append((self.step, loss_value))
            self.history["lr"].append((self.step, lr))
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)  # redraw at tqdm's pace
            if self.eval_every and self.step % self.eval_every == 0:
                self.evaluate()
        bar.close()
        self.seconds += time.perf_counter() - start
        if self.eval_fn is not None and not (self.eval_every and self.step % self.eval_every == 0):
            self.evaluate()
        return self.history

    def save(self, path) -> None:
        save_checkpoint(path, self.model, self.optimizer, self.scheduler, self.step, self.history,
                        elapsed=self.seconds)

    def load(self, path) -> None:
        meta = load_checkpoint(path, self.model, self.optimizer, self.scheduler)
        self.step = meta["step"]
        self.seconds = float(meta.get("elapsed", 0.0))
        self.history = meta["history"]  # as saved, pairs as tuples (load_checkpoint)
        for key in ("train_loss", "lr"):  # a history another loop wrote may lack them
            self.history.setdefault(key, [])
