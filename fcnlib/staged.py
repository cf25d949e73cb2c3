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


# ---------------------------------------------------------------------- figures
def draw_architecture(nets: dict, title: str = ""):
    """Fig. 3 from the modules themselves: for each net (``{"FCN-32s": model, …}``) the backbone's
    poolings with their strides and channels, fc6–fc7, the score layers, the skips with their crop
    offsets and the upsamplings with their kernels — every label read from ``model.describe()``."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    fig, axes = plt.subplots(len(nets), 1, figsize=(12.5, 2.7 * len(nets)), squeeze=False)
    for ax, (label, net) in zip(axes[:, 0], nets.items()):
        d, stages = net.describe(), net.backbone_stages()
        h = lambda s: 1.9 / s ** 0.42  # noqa: E731 — box height shrinks with the stride
        boxes = {"image": (0, 2.2)}
        for i, st in enumerate(stages, 1):
            boxes[st["name"]] = (1.25 * i, h(st["stride"]))
        xfc = 1.25 * (len(stages) + 1)
        boxes["fc"] = (xfc, h(32))
        has_fc = d["fc6_kernel"] is not None
        ax.add_patch(Rectangle((-0.35, -1.1), 0.7, 2.2, fc="#dddddd", ec="k"))
        ax.text(0, -1.25, f"image\n(pad {d['conv1_padding']})", ha="center", va="top", fontsize=7.5)
        for st in stages:
            x, hh = boxes[st["name"]]
            ax.add_patch(Rectangle((x - 0.3, -hh / 2), 0.6, hh, fc="#88aadd", ec="k"))
            ax.text(x, -1.25, f"{st['name']}\n1/{st['stride']}\n{st['channels']} ch", ha="center", va="top",
                    fontsize=7.5)
        k6 = d["fc6_kernel"]
        if has_fc:
            ax.add_patch(Rectangle((xfc - 0.3, -h(32) / 2), 0.6, h(32), fc="#aaccee", ec="k"))
            ax.text(xfc, -1.25, f"fc6 {k6}×{k6}\nfc7 1×1\n{d['channels']['fc7']} ch", ha="center", va="top",
                    fontsize=7.5)
        arrow = lambda a, b, **kw: ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10,  # noqa: E731
                                                                lw=1.1, **kw))
        for a, b in zip(["image"] + [s["name"] for s in stages], [s["name"] for s in stages] + ["fc"] * has_fc):
            arrow((boxes[a][0] + 0.35, 0), (boxes[b][0] - 0.32, 0), color="0.4")
        ups, crops = d["upsampling"], d["crops"]
        K = d["num_classes"]
        x = xfc + 1.5
        if d["variant"] == "pool4":
            arrow((boxes["pool4"][0] + 0.3, 0), (x - 0.15, 0), color="C3", connectionstyle="arc3,rad=0.15")
            ax.add_patch(Rectangle((x - 0.15, -h(16) / 2), 0.3, h(16), fc="#ee9966", ec="k"))
            ax.text(x, h(16) / 2 + 0.1, f"score_pool4\n1×1 → {K}", ha="center", fontsize=7.5)
        else:
            arrow((xfc + 0.35, 0), (x - 0.15, 0), color="k")
            ax.add_patch(Rectangle((x - 0.15, -h(32) / 2), 0.3, h(32), fc="#ee9966", ec="k"))
            ax.text(x, h(32) / 2 + 0.1, f"score_fr\n1×1 → {K}", ha="center", fontsize=7.5)
        stride = 32 if d["variant"] != "pool4" else 16
        for skip, pool in (("pool4", "pool4"), ("pool3", "pool3")):
            if skip not in crops:
                continue
            up = ups["upscore2" if skip == "pool4" else "upscore_pool4"]
            x2 = x + 1.6
            stride //= 2
            arrow((x + 0.15, 0), (x2 - 0.15, 0), color="k")
            ax.text((x + x2) / 2, 0.12, f"×{up['stride']} (k{up['kernel']},\nlearned)", ha="center", fontsize=7)
            px = boxes[pool][0]
            arrow((px, -boxes[pool][1] / 2), (x2, -h(stride) / 2 - 0.02), color="C3",
                  connectionstyle="arc3,rad=0.12")
            pad = d["skip_padding"].get(f"score_{skip}", 0)
            ax.text(x2 + 0.2, -1.85 - (0.3 if skip == "pool3" else 0),
                    f"score_{skip} 1×1 → {K}{f', pad {pad}' if pad else ''}, crop {crops[skip]}",
                    ha="right", fontsize=7.5, color="C3")
            ax.add_patch(Rectangle((x2 - 0.15, -h(stride) / 2), 0.3, h(stride), fc="#ee9966", ec="k"))
            ax.text(x2, h(stride) / 2 + 0.1, f"+ (1/{stride})", ha="center", fontsize=7.5)
            x = x2
        final = ups["upscore"]
        xp = x + 2.0
        arrow((x + 0.15, 0), (xp - 0.4, 0), color="k")
        ax.text((x + xp) / 2 - 0.1, 0.12, f"×{final['stride']} (k{final['kernel']},\nfixed)\ncrop {crops['final']}",
                ha="center", fontsize=7)
        ax.add_patch(Rectangle((xp - 0.35, -1.1), 0.7, 2.2, fc="#f4d5b0", ec="k"))
        ax.text(xp, -1.25, "prediction\n1/1", ha="center", va="top", fontsize=7.5)
        ax.set_xlim(-0.8, xp + 0.8)
        ax.set_ylim(-2.5, 1.6)
        ax.set_title(label, loc="left", fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def map_on_image(scores: torch.Tensor, stride, centre, size) -> torch.Tensor:
    """A score map (K, h, w) shown on the image's pixel grid: pixel p takes the unit whose centre is
    nearest, u = round((p − centre) / stride) (its coordinate map, ``FCN.map_geometry()``), so a
    stride-32 map shows as 32-px blocks where the image's pixels are. Returns (K, H, W)."""
    H, W = (size, size) if isinstance(size, int) else size
    h, w = scores.shape[-2:]
    rows = ((torch.arange(H) - float(centre)) / float(stride)).round().long().clamp(0, h - 1)
    cols = ((torch.arange(W) - float(centre)) / float(stride)).round().long().clamp(0, w - 1)
    return scores[..., rows[:, None], cols[None, :]]


def plot_curves(results: dict, ax=None, smooth: int = 10):
    """Training loss of the stages, one after another on a common step axis (moving average)."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(9, 3.2))[1]
    for name, r in results.items():
        loss = torch.tensor(r.history.loss)
        if len(loss) >= smooth > 1:
            loss = torch.nn.functional.avg_pool1d(loss[None, None], smooth, 1)[0, 0]
        start = r.extra.get("start_step", 0)
        ax.plot(start + torch.arange(len(loss)) + smooth // 2, loss, label=f"{name} (lr {r.extra.get('lr', '?'):g})")
    ax.set_xlabel("SGD step (stages continue their parent's count)")
    ax.set_ylabel("pixel loss")
    ax.legend(fontsize=7, ncol=2)
    return ax


def padded_tensors(dataset, size: int, ignore_index: int = 255):
    """Images and labels of a dataset whose samples differ in size (VOC), zero-/void-padded (and
    cropped) to ``size``×``size`` at the bottom/right: (N, 3, S, S) float, (N, S, S) int64."""
    X = torch.zeros(len(dataset), 3, size, size)
    Y = torch.full((len(dataset), size, size), ignore_index, dtype=torch.int64)
    for i in range(len(dataset)):
        x, y = dataset[i]
        h, w = min(size, y.shape[0]), min(size, y.shape[1])
        X[i, :, :h, :w], Y[i, :h, :w] = x[:, :h, :w], y[:h, :w]
    return X, Y


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_imagenet(x: torch.Tensor) -> torch.Tensor:
    """Course-normalized images (fcnlib.data.normalize) → torchvision's ImageNet normalization."""
    from .data import MEAN, STD
    c = lambda v: torch.tensor(v, device=x.device).view(3, 1, 1)  # noqa: E731
    return (x * c(STD) + c(MEAN) - c(IMAGENET_MEAN)) / c(IMAGENET_STD)
