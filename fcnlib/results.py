"""Recording a notebook's key figures into results/summary.json.

Each notebook calls :func:`start_run` in its derived-values cell and then ``run.record(...)`` for every
figure it computes; ``run.compare(...)`` stores one of ours beside the paper's value (looked up with
``fcnlib.paper``, never typed in). summary.json holds one object per notebook stem and is merged under
a file lock with an atomic rename, so notebooks run in parallel never clobber each other.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import paths, runtime, tiers

SUMMARY = "summary.json"


def to_jsonable(value):
    """Tensors, NumPy values, paths and tuples → plain JSON values (NaN/inf → None)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (Path, torch.device)):
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"cannot record a value of type {type(value).__name__}: {value!r}")


@contextmanager
def _locked(results: Path):
    with open(results / ".summary.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_summary(results_dir=None) -> dict:
    path = paths.results_dir(results_dir) / SUMMARY
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def merge_summary(stem: str, update: dict, results_dir=None, replace: bool = False) -> dict:
    """Merge ``update`` into ``summary[stem]`` (or replace it) under a lock; return the new entry."""
    results = paths.results_dir(results_dir)
    with _locked(results):
        summary = load_summary(results)
        entry = {} if replace else dict(summary.get(stem, {}))
        entry.update(to_jsonable(update))
        summary[stem] = entry
        paths.atomic_write_text(results / SUMMARY, json.dumps(summary, indent=2, sort_keys=True))
    return entry


class Run:
    """One execution of one notebook: device, seed, tier, and what it recorded."""

    def __init__(self, stem, tier="embedded", device="auto", seed=0, results_dir=None, threads="auto"):
        self.stem = stem
        self.tier = tiers.check_tier(tier)
        self.device = runtime.pick_device(device)
        self.seed = seed
        self.generator = runtime.seed_everything(seed)
        self.threads = runtime.set_threads(threads) if self.device.type == "cpu" else torch.get_num_threads()
        self.results = paths.results_dir(results_dir)
        self.figdir = self.results / "figures" / stem
        self.figures: list[str] = []
        self.t0 = time.perf_counter()
        merge_summary(stem, {"_run": {
            "tier": self.tier, "device": self.device, "seed": seed, "threads": self.threads,
            "versions": runtime.versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "status": "running"}}, self.results, replace=True)

    def __repr__(self):
        return f"Run({self.stem!r}, tier={self.tier!r}, device={str(self.device)!r}, seed={self.seed})"

    def record(self, **values) -> dict:
        """Record key figures (numbers, lists, small dicts) under this notebook's stem."""
        return merge_summary(self.stem, values, self.results)

    def compare(self, name: str, ours, paper, unit: str = "", note: str = "") -> None:
        """Record one of ours beside the paper's value, for REPORT.md."""
        entry = load_summary(self.results).get(self.stem, {})
        rows = [r for r in entry.get("_compare", []) if r["name"] != name]
        rows.append({"name": name, "ours": ours, "paper": paper, "unit": unit, "note": note})
        merge_summary(self.stem, {"_compare": rows}, self.results)

    def savefig(self, fig, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure under results/figures/<stem>/<name>.png (atomically)."""
        import io
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        path = paths.atomic_write_bytes(self.figdir / f"{name}.png", buf.getvalue())
        if name not in self.figures:
            self.figures.append(name)
        return path

    def finish(self) -> dict:
        """Close the run record: wall time, figures saved, status ok."""
        entry = load_summary(self.results).get(self.stem, {})
        run = dict(entry.get("_run", {}))
        run.update(wall_time_s=round(time.perf_counter() - self.t0, 3), status="ok",
                   figures=[str((self.figdir / f"{n}.png").relative_to(self.results)) for n in self.figures])
        return merge_summary(self.stem, {"_run": run}, self.results)


def start_run(stem, tier="embedded", device="auto", seed=0, results_dir=None, threads="auto") -> Run:
    """Validate the parameters, pick the device, seed everything, set CPU threads; return a :class:`Run`."""
    return Run(stem, tier=tier, device=device, seed=seed, results_dir=results_dir, threads=threads)
