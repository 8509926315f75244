"""Helpers shared by the benchmark scripts: machine description, timing, matmul peak."""
from __future__ import annotations

import platform
import statistics
import time

import torch


def machine() -> str:
    """One line naming the machine the figures came from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    import transformers
    return (f"{cpu}, {torch.get_num_threads()} threads{gpu}; torch {torch.__version__}, "
            f"transformers {transformers.__version__}")


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(fns: dict, steps: int, warmup: int, device) -> dict:
    """Median seconds per call of each function, calls interleaved (A B C, B C A, ...) so that
    a machine that speeds up or slows down during the run affects every contender alike."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    for i in range(steps):
        order = names[i % len(names):] + names[:i % len(names)]
        for n in order:
            times[n].append(timed(fns[n], device))
    return {n: statistics.median(t) for n, t in times.items()}


def matmul_peak(device, n: int = 1024, reps: int = 20, dtype=torch.float32) -> float:
    """FLOP/s of an n x n x n matrix product, the best of ``reps``: the machine's usable peak
    (the best, not the median: on a shared machine the median measures the neighbours)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    t = min(timed(lambda: a @ b, device) for _ in range(reps))
    return 2 * n ** 3 / t
