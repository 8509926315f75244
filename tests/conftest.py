"""Shared test settings.

The unit tests use tiny tensors, for which one thread is faster than two and immune to the
slow-down of two-thread torch on a busy 2-core machine. Notebooks (nbval) run in their own
kernels and keep torch's default.
"""
import os

import torch

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)
