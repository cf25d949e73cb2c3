"""Staged training of the skip nets (§4.2): FCN-32s, then FCN-16s from it, then FCN-8s from that.

Each stage starts from the previous stage's trained weights (``fcnlib.surgery.fcn16s_from`` /
``fcn8s_from``: new skip scores zero, so the net starts where the last one ended) and trains with
:func:`fcnlib.train.train` at a learning rate divided by ``divisor`` (100 in the paper). Every stage
writes its checkpoint under ``ckpt_dir`` with a name keyed by everything that determines it (its
config, the data, its parent's key), so a crashed run resumes mid-stage and a finished stage is
loaded instead of retrained.

``Stage`` holds one stage's recipe; :func:`run_stage` trains (or resumes) it and evaluates it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import metrics
from .train import History, TrainConfig, train


@dataclass
class Stage:
    """One training stage: ``build(parent_model) -> model``, then ``cfg.iters`` SGD steps."""
    name: str                         # "fcn32s", "fcn16s", … (the key it is recorded under)
    build: Callable                   # parent FCN (or None for the first stage) → the model to train
    cfg: TrainConfig
    parent: str | None = None         # name of the stage it starts from
    note: str = ""


@dataclass
class StageResult:
    name: str
    model: torch.nn.Module
    history: History
    metrics: dict
    key: str
    train_time_s: float               # training wall time (resumed steps included, evaluation excluded)
    resumed: bool = False
    extra: dict = field(default_factory=dict)


def paper_learning_rates(lr_32s: float, divisor: float = 100, stages: int = 3) -> list[float]:
    """§4.2: each upgrade (32s → 16s → 8s) divides the learning rate by ``divisor`` (100)."""
    return [lr_32s / divisor ** i for i in range(stages)]


def stage_key(stage: Stage, data_key: str, parent_key: str = "") -> str:
    """A short hash naming everything that determines a stage's result."""
    spec = {"name": stage.name, "cfg": dataclasses.asdict(stage.cfg), "data": data_key, "parent": parent_key}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def data_key(**spec) -> str:
    """A key for the data a run trains and evaluates on (sizes, counts, seed, pretrained weights…)."""
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]


def evaluate(model, val, num_classes: int, device=None, batch_size: int = 25) -> dict:
    """The four metrics of §5 on ``val`` = (X, Y) tensors (or a Dataset)."""
    if isinstance(val, (tuple, list)):
        val = torch.utils.data.TensorDataset(*val)
    return metrics.evaluate(model, val, num_classes, device=device, batch_size=batch_size)


def run_stage(stage: Stage, parent: StageResult | None, train_data, val, *, num_classes: int,
              ckpt_dir: Path, data_id: str, device=None, progress: bool = True,
              batch_fn=None) -> StageResult:
    """Build the stage's model from its parent, train it (resuming from its checkpoint), evaluate it."""
    key = stage_key(stage, data_id, parent.key if parent else "")
    model = stage.build(parent.model if parent else None)
    if device is not None:
        model = model.to(device)
    ckpt = Path(ckpt_dir) / f"{stage.name}-{key}.pt"
    resumed = ckpt.exists()
    t0 = time.perf_counter()
    hist = train(model, train_data, stage.cfg, device=device, ckpt_path=ckpt, desc=stage.name,
                 progress=progress, batch_fn=batch_fn)
    wall = time.perf_counter() - t0
    scores = evaluate(model, val, num_classes, device=device)
    start = (parent.extra["start_step"] + len(parent.history.step)) if parent else 0
    return StageResult(stage.name, model, hist, scores, key, hist.wall_time, resumed,
                       {"ckpt": str(ckpt), "call_wall_s": wall, "lr": stage.cfg.lr, "start_step": start})


def run_plan(plan: list[Stage], train_data, val, *, num_classes: int, ckpt_dir: Path, data_id: str,
             device=None, progress: bool = True, before: Callable | None = None) -> dict[str, StageResult]:
    """Run the stages of ``plan`` in order, each from its parent's result; ``before(stage, results)`` is
    called before each stage (to check a starting point, say). Returns ``{stage name: StageResult}``."""
    results: dict[str, StageResult] = {}
    for st in plan:
        if before is not None:
            before(st, results)
        results[st.name] = run_stage(st, results.get(st.parent), train_data, val, num_classes=num_classes,
                                     ckpt_dir=ckpt_dir, data_id=data_id, device=device, progress=progress)
    return results
