"""Device, seeding, CPU threads and the run record every notebook keeps.

The course runs unchanged on a CUDA GPU, an Apple GPU (MPS) or a plain CPU: ``pick_device``
chooses, ``autocast`` turns on bf16 where it pays (CUDA only: CPU bf16 convolutions are several
times slower than fp32), and ``start_run`` bundles it with the seed, the tier and a record of the run
that ``fcnlib.results`` merges into results/summary.json.
"""
from __future__ import annotations

import contextlib
import os
import platform
import random
import statistics
import time

import numpy as np
import torch


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


def rng_state() -> dict:
    """Every global random state a training loop may draw from (dropout, augmentation): torch's CPU
    and CUDA generators, Python's and NumPy's, as plain values and tensors (``weights_only`` loads)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 convolutions are slower than fp32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to ``device`` in channels_last memory format, which speeds convolutions up on CUDA
    (cuDNN) and on the CPU (oneDNN: the embedded FCN-8s training step runs about 1.3× faster at 64 px,
    ``benchmarks/bench_train.py``). The inputs follow: :func:`channels_last`."""
    model.to(device)
    model.to(memory_format=torch.channels_last)
    return model


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """A batch of images (N, C, H, W) in channels_last memory format (other tensors unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so that wall-clock timings mean something on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ---------------------------------------------------------------------------- timing and GEMMs
class Clock:
    """``start()`` / ``stop()`` → seconds: CUDA events on a GPU, else perf_counter after a device sync."""

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"
        if self.cuda:
            self.events = [torch.cuda.Event(enable_timing=True) for _ in range(2)]

    def start(self):
        if self.cuda:
            self.events[0].record()
        else:
            sync(self.device)
            self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.events[1].record()
            self.events[1].synchronize()
            return self.events[0].elapsed_time(self.events[1]) / 1e3
        sync(self.device)
        return time.perf_counter() - self.t0


# ---------------------------------------------------------------------------- CPU threads
def _time_threads(candidates: list[int], rounds: int = 3, reps: int = 3) -> dict:
    """Best time (s) of a convolution per thread count, the counts interleaved round by round so
    that a burst of load elsewhere does not decide the comparison."""
    # bookkeeping must not move the run's random streams: a private generator for the input and an
    # uninitialized weight (only the time matters), so the global generator is never drawn from
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, 96, 96, generator=g)
    weight = torch.empty(32, 32, 3, 3).uniform_(-0.06, 0.06, generator=g)
    conv = lambda t: torch.nn.functional.conv2d(t, weight, padding=1)  # noqa: E731
    best = {n: float("inf") for n in candidates}
    with torch.no_grad():
        for n in candidates:                        # warm-up: thread pools and kernel choice
            torch.set_num_threads(n)
            conv(x)
        for _ in range(rounds):
            for n in candidates:
                torch.set_num_threads(n)
                for _ in range(reps):
                    t0 = time.perf_counter()
                    conv(x)
                    best[n] = min(best[n], time.perf_counter() - t0)
    return best


_CHOSEN: dict = {}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow),
    not the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_cores(interval: float = 0.5) -> float:
    """How many cores other processes keep busy, measured over ``interval`` seconds from /proc/stat
    (Linux; 0.0 elsewhere). Called while this process is idle, it is the machine's load by others."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]            # all jiffies, idle + iowait
    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    cores = os.cpu_count() or 1
    return max(0.0, cores * (1 - (i1 - i0) / max(1, t1 - t0)))


# When other processes keep a core busy, OpenMP threads that spin while they wait for each other take
# its time slices: measured on the 2-core CPU (FCN-8s training step, 10 images of 128 px, 2 threads)
# 0.13 s quiet, 0.72 s with one core busy; with GOMP_SPINCOUNT=1000 0.26 s busy but 0.15 s quiet.
# The spin count changes no number (the thread count, which would, stays), so the runner lowers it only
# for kernels started on a busy machine.
BUSY_SPINCOUNT = "1000"


def spin_env(busy: float) -> dict:
    """Environment for a kernel started while ``busy`` cores are taken by others: a short OpenMP spin
    (libgomp's GOMP_SPINCOUNT) when at least half a core is, unless the user set one."""
    if busy >= 0.5 and "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        return {"GOMP_SPINCOUNT": BUSY_SPINCOUNT}
    return {}


def choose_threads(candidates: list[int] | None = None, cache: bool = True) -> int:
    """Measure a convolution with 1, 2, … threads (interleaved) and return the fastest count.

    On small shared VMs one thread can beat two, so this is measured, not assumed (it takes about a
    tenth of a second). The choice is kept for the rest of the process (``cache``), not on disk: a
    choice made while the machine was busy must not outlive the load. Benchmarks use it
    (``set_threads("fastest")``); runs that record results do not (see :func:`set_threads`).
    """
    cores = usable_cores()
    candidates = tuple(candidates or sorted({1, min(2, cores), cores}))
    if len(candidates) == 1:
        return candidates[0]
    if cache and candidates in _CHOSEN:
        return _CHOSEN[candidates]
    before = torch.get_num_threads()
    timings = _time_threads(list(candidates))
    torch.set_num_threads(before)
    _CHOSEN[candidates] = best = min(timings, key=timings.get)
    return best


def set_threads(threads: int | str = "auto") -> int:
    """Set torch's intra-op thread count and return it.

    ``"auto"``: ``FCN_THREADS`` if set, else every usable core. A fixed rule, not a measurement, on
    purpose: floating-point sums differ between thread counts, so a count chosen by timing would let
    the machine's load of the moment change a run's numbers. ``"fastest"``: measured by
    :func:`choose_threads` (for benchmarks, where only speed matters).
    """
    if threads == "auto":
        env = os.environ.get("FCN_THREADS", "").strip()
        if env and not env.isdigit():
            raise ValueError(f"FCN_THREADS={env!r} is not a positive integer: set it to e.g. 2, or unset it "
                             "to use every usable core")
        threads = int(env) if env else usable_cores()
    elif threads == "fastest":
        threads = choose_threads()
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, 'auto' or 'fastest', got {threads!r}")
    torch.set_num_threads(threads)
    return threads


def versions() -> dict:
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "platform": platform.platform()}


# ---------------------------------------------------------------------------- cost
def flop_count(fn, *args, per_module: bool = False):
    """Forward FLOPs of ``fn(*args)`` by torch.utils.flop_counter (a multiply-add counts 2;
    convolutions and matrix products only: pooling, padding and the interlace are not counted).
    The course's one FLOP counter. ``per_module``: ``{module name: FLOPs}`` for every submodule of
    ``fn`` (an ``nn.Module``) that computed any, names as ``named_modules`` gives them."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    if not per_module:
        return counter.get_total_flops()
    counts, root = counter.get_flop_counts(), type(fn).__name__
    return {name: sum(counts[f"{root}.{name}"].values()) for name, _ in fn.named_modules()
            if name and f"{root}.{name}" in counts}


def best_time(fn, device: torch.device, reps: int = 3, warmup: int = 0) -> float:
    """Best wall time (s) of ``reps`` calls of the zero-argument ``fn`` after ``warmup`` untimed ones,
    ``runtime.sync`` before each clock reading (autograd as the caller has it: training steps time
    their backward too). The minimum, not the median: what the machine can do when nothing else
    interferes; :func:`median_times` compares several methods interleaved."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def median_times(fns: dict, device: torch.device, reps: int = 5, warmup: int = 1, grad: bool = False) -> dict:
    """Median wall time (s) of each zero-argument function in ``fns``, repetitions interleaved so
    that a busy machine slows every method alike; ``runtime.sync`` before each clock reading.
    Autograd is off unless ``grad`` (training steps)."""
    times = {name: [] for name in fns}
    with torch.set_grad_enabled(grad):
        for rep in range(warmup + reps):
            for name, fn in fns.items():
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                if rep >= warmup:
                    times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}
