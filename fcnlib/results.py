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


class CorruptSummaryError(ValueError):
    """results/summary.json exists but is not a JSON object of notebook entries."""


def load_summary(results_dir=None) -> dict:
    """summary.json as a dict (empty if there is none); a damaged file raises :class:`CorruptSummaryError`
    naming it."""
    path = paths.results_dir(results_dir) / SUMMARY
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptSummaryError(f"{path} is not valid JSON ({e}): it was damaged (a disk full, an editor?). "
                                  "Move it aside or delete it; the next notebook run starts a new one "
                                  "(or rerun `make reproduce` to rebuild every entry)") from e
    if not isinstance(summary, dict):
        raise CorruptSummaryError(f"{path} holds a {type(summary).__name__}, not an object of notebook entries: "
                                  "move it aside or delete it")
    return summary


def _load_or_set_aside(results: Path) -> dict:
    """Under the lock: the summary, or {} after moving a damaged file aside (with a warning naming both)."""
    try:
        return load_summary(results)
    except CorruptSummaryError as e:
        import warnings
        aside = results / f"{SUMMARY}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(results / SUMMARY, aside)
        warnings.warn(f"{e}\nIt was moved to {aside}; a new summary.json is started.", stacklevel=3)
        return {}


def merge_summary(stem: str, update: dict, results_dir=None, replace: bool = False) -> dict:
    """Merge ``update`` into ``summary[stem]`` (or replace it) under a lock; return the new entry."""
    results = paths.results_dir(results_dir)
    with _locked(results):
        summary = _load_or_set_aside(results)
        entry = {} if replace else dict(summary.get(stem, {}))
        entry.update(to_jsonable(update))
        summary[stem] = entry
        paths.atomic_write_text(results / SUMMARY, json.dumps(summary, indent=2, sort_keys=True))
    return entry


def _figures(entry: dict) -> dict:
    """An entry's recorded figures and claims, without its run record."""
    return {k: v for k, v in entry.items() if k not in ("_run", "_previous")}


def _last_complete(entry: dict) -> dict | None:
    """The most recent *finished* run held in an entry (itself, its stale figures, or ``_previous``)."""
    run = entry.get("_run", {})
    if run.get("status") == "ok":
        return {k: v for k, v in entry.items() if k != "_previous"}
    if run.get("stale"):
        return {**_figures(entry), "_run": {"status": "ok", "started": run.get("stale_from"),
                                            "tier": run.get("stale_tier"), "figures": run.get("figures", [])}}
    return entry.get("_previous")


def set_outcome(stem: str, run_id: str, status: str, error: str = "", results_dir=None) -> dict:
    """The runner's word on one notebook execution (``run_id`` = the ``FCN_RUN_ID`` it ran with).

    ``ok`` needs the notebook's own ``run.finish()`` for that run. ``failed`` / ``timeout``: the entry
    says so with the error; if an earlier run of the notebook had finished, its figures are kept,
    marked stale (``_run.stale``), instead of the failed run's partial ones — whether the notebook
    failed after ``start_run`` or before it (a bad device, a dead kernel).
    """
    results = paths.results_dir(results_dir)
    with _locked(results):
        summary = _load_or_set_aside(results)
        entry = summary.get(stem, {})
        run = entry.get("_run", {})
        this_run = run.get("run_id") == run_id
        if status == "ok":
            if not (this_run and run.get("status") == "ok"):
                status, error = "failed", "the notebook ran but did not reach run.finish()"
            else:
                return entry
        previous = entry.get("_previous") if this_run else _last_complete(entry)
        failed = {"status": status, "error": error, "run_id": run_id,
                  "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if this_run:
            failed = {**run, **failed}
        if previous:   # keep the last complete results, marked stale
            prev_run = previous.get("_run", {})
            new = {**_figures(previous), "_run": {**failed, "stale": True,
                                                  "stale_from": prev_run.get("started"),
                                                  "stale_tier": prev_run.get("tier"),
                                                  "figures": prev_run.get("figures", [])}}
        else:
            new = {**(_figures(entry) if this_run else {}), "_run": {**failed, "stale": False}}
        summary[stem] = new
        paths.atomic_write_text(results / SUMMARY, json.dumps(summary, indent=2, sort_keys=True))
    return new


class Run:
    """One execution of one notebook: device, seed, tier, and what it recorded."""

    def __init__(self, stem, tier="embedded", device="auto", seed=0, results_dir=None, threads="auto"):
        self.stem = stem
        self.tier = tiers.check_tier(tier)
        self.device = runtime.pick_device(device)
        self.seed = seed
        # threads first: measuring them must not move the random streams the seed fixes
        self.threads = runtime.set_threads(threads) if self.device.type == "cpu" else torch.get_num_threads()
        self.generator = runtime.seed_everything(seed)
        self.results = paths.results_dir(results_dir)
        self.figdir = self.results / "figures" / stem
        self.figures: list[str] = []
        self.t0 = time.perf_counter()
        self.run_id = os.environ.get("FCN_RUN_ID") or f"{stem}-{os.getpid()}-{time.time_ns()}"
        with _locked(self.results):   # a finished earlier run is kept until this one finishes
            old = _load_or_set_aside(self.results).get(stem, {})
        previous = _last_complete(old)
        merge_summary(stem, {"_run": {
            "tier": self.tier, "device": self.device, "seed": seed, "threads": self.threads,
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),   # set by the runner on a busy machine
            "versions": runtime.versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "status": "running", "run_id": self.run_id},
            **({"_previous": previous} if previous else {})}, self.results, replace=True)

    def __repr__(self):
        return f"Run({self.stem!r}, tier={self.tier!r}, device={str(self.device)!r}, seed={self.seed})"

    def record(self, **values) -> None:
        """Record key figures (numbers, lists, small dicts) under this notebook's stem (returns nothing,
        so a cell ending with it shows nothing: the record is in summary.json and REPORT.md)."""
        merge_summary(self.stem, values, self.results)

    def compare(self, name: str, ours, paper, unit: str = "", note: str = "") -> None:
        """Record one of ours beside the paper's value, for REPORT.md."""
        entry = load_summary(self.results).get(self.stem, {})
        rows = [r for r in entry.get("_compare", []) if r["name"] != name]
        rows.append({"name": name, "ours": ours, "paper": paper, "unit": unit, "note": note})
        merge_summary(self.stem, {"_compare": rows}, self.results)

    def claim(self, claim_id: str, *, ours, paper, verdict: str, why: str = "", seeds=None,
              spread=None) -> None:
        """Record this run's verdict on one of the paper's claims (registered in ``fcnlib.claims``):
        ``ours`` and ``paper`` are short values (the paper's looked up with ``fcnlib.paper``), ``seeds``
        the seeds a trained-model claim rests on and ``spread`` its spread over them
        (``claims.spread``). REPORT.md's ledger shows it."""
        from . import claims
        claims.check(claim_id, self.stem, verdict, why)
        if verdict == "not run in this tier":
            why = f"the {self.tier} tier cannot show it" + (" (seconds of training, toy sizes)" if self.tier == "smoke" else "")
        row = {"ours": ours, "paper": paper, "verdict": verdict, "why": why, "tier": self.tier,
               "seeds": list(seeds) if seeds is not None else None, "spread": spread}
        entry = load_summary(self.results).get(self.stem, {})
        merge_summary(self.stem, {"_claims": {**entry.get("_claims", {}), claim_id: row}}, self.results)

    def savefig(self, fig, name: str, dpi: int = 110) -> None:
        """Save a matplotlib figure under results/figures/<stem>/<name>.png (atomically); :meth:`figure_path`
        says where."""
        import io
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        paths.atomic_write_bytes(self.figure_path(name), buf.getvalue())
        if name not in self.figures:
            self.figures.append(name)

    def figure_path(self, name: str) -> Path:
        return self.figdir / f"{name}.png"

    def finish(self) -> None:
        """Close the run record (wall time, figures saved, status ok) and print one line about it."""
        entry = load_summary(self.results).get(self.stem, {})
        run = dict(entry.get("_run", {}))
        run.update(wall_time_s=round(time.perf_counter() - self.t0, 3), status="ok",
                   figures=[str(self.figure_path(n).relative_to(self.results)) for n in self.figures])
        entry = {k: v for k, v in entry.items() if k != "_previous"}
        merge_summary(self.stem, {**entry, "_run": run}, self.results, replace=True)
        def n(count, what):
            return f"{count} {what}{'s' * (count != 1)}"
        values = [k for k in entry if not k.startswith("_")]
        print(f"{self.stem} finished in {run['wall_time_s']:.0f} s ({self.tier} tier): {n(len(values), 'value')}, "
              f"{n(len(entry.get('_claims', {})), 'claim')} and {n(len(self.figures), 'figure')} recorded "
              f"in {self.results}")


def start_run(stem, tier="embedded", device="auto", seed=0, results_dir=None, threads="auto") -> Run:
    """Validate the parameters, pick the device, seed everything, set CPU threads; return a :class:`Run`."""
    return Run(stem, tier=tier, device=device, seed=seed, results_dir=results_dir, threads=threads)
