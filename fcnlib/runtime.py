"""Device, seeding, CPU threads and the run record every notebook keeps.

The course runs unchanged on a CUDA GPU, an Apple GPU (MPS) or a plain CPU: ``pick_device``
chooses, ``autocast`` turns on bf16 where it pays (CUDA only: CPU bf16 convolutions are several
times slower than fp32), and ``start_run`` bundles it with the seed, the tier and a record of the run
that ``fcnlib.results`` merges into results/summary.json.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from . import paths

DEVICES = ("auto", "cuda", "mps", "cpu")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """Return the device to run on: ``cuda`` → ``mps`` → ``cpu`` for ``"auto"``.

    An explicit device that is not available is an error, not a silent fallback.
    """
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).lower()
    base = name.split(":")[0]
    if base not in DEVICES:
        raise ValueError(f"unknown device {device!r}: use one of {', '.join(DEVICES)} (or 'cuda:N')")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available here: "
                           "pass device='auto' or device='cpu'")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' was asked for but MPS is not available: pass device='auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 convolutions are slower than fp32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to ``device``; channels_last memory format on CUDA, where it speeds convolutions."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so that wall-clock timings mean something on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ---------------------------------------------------------------------------- CPU threads
def _time_threads(n: int, reps: int = 5) -> float:
    torch.set_num_threads(n)
    x = torch.randn(4, 32, 96, 96)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    with torch.no_grad():
        conv(x)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t0)
    return best


def choose_threads(candidates: list[int] | None = None, cache: bool = True) -> int:
    """Measure a convolution with 1, 2, … threads and return the fastest count.

    On small shared VMs one thread can beat two, so this is measured, not assumed. The choice is
    cached (data/cache/threads.json) per machine, core count and torch version.
    """
    cores = os.cpu_count() or 1
    candidates = candidates or sorted({1, min(2, cores), cores})
    key = f"{platform.node()}|{cores}|{torch.__version__}|{candidates}"
    path = paths.cache_dir() / "threads.json"
    if cache and path.exists():
        try:
            known = json.loads(path.read_text())
            if key in known:
                return int(known[key]["threads"])
        except (OSError, ValueError, KeyError):
            pass
    timings = {n: _time_threads(n) for n in candidates}
    best = min(timings, key=timings.get)
    if cache:
        known = {}
        if path.exists():
            try:
                known = json.loads(path.read_text())
            except (OSError, ValueError):
                known = {}
        known[key] = {"threads": best, "seconds": {str(k): v for k, v in timings.items()}}
        paths.atomic_write_text(path, json.dumps(known, indent=1))
    return best


def set_threads(threads: int | str = "auto") -> int:
    """Set torch's intra-op thread count (``"auto"`` = measured by :func:`choose_threads`)."""
    if threads == "auto":
        env = os.environ.get("FCN_THREADS")
        threads = int(env) if env else choose_threads()
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or 'auto', got {threads!r}")
    torch.set_num_threads(threads)
    return threads


def versions() -> dict:
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "platform": platform.platform()}


# ---------------------------------------------------------------------------- cost
def flop_count(fn, *args) -> int:
    """Forward FLOPs of ``fn(*args)`` by torch.utils.flop_counter (a multiply-add counts 2;
    convolutions and matrix products only: pooling, padding and the interlace are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def median_times(fns: dict, device: torch.device, reps: int = 5, warmup: int = 1) -> dict:
    """Median wall time (s) of each zero-argument function in ``fns``, repetitions interleaved so
    that a busy machine slows every method alike; ``runtime.sync`` before each clock reading."""
    times = {name: [] for name in fns}
    with torch.no_grad():
        for rep in range(warmup + reps):
            for name, fn in fns.items():
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                if rep >= warmup:
                    times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}
