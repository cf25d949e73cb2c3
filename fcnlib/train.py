"""A lean training loop (in the manner of nanoGPT's train.py) with the paper's recipe as defaults.

Section 4.3: SGD with momentum 0.9, a fixed learning rate, weight decay 5e-4, biases at twice the
learning rate, per-pixel multinomial logistic loss with void pixels ignored. The loop keeps a history
(loss, wall time, evaluations) for curves, writes checkpoints atomically and resumes from the last one
after a crash, and stops with a message naming the step if the loss turns NaN or infinite.

Data is a pair of tensors ``(X, Y)`` held in memory (the embedded datasets are small) or any Dataset;
minibatches are drawn with a generator seeded by (seed, step), so a resumed run sees the same batches.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import paths
from .runtime import autocast, prepare_model, sync

VOID = 255


@dataclass
class TrainConfig:
    iters: int = 100
    batch_size: int = 20          # the paper's minibatch of 20 images
    lr: float = 1e-4              # fixed learning rate (VGG16: 1e-4, AlexNet: 1e-3)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_mult: float = 2.0     # biases learn at twice the rate, without weight decay
    eval_every: int = 0           # 0: evaluate only at the end (if an eval_fn is given)
    ckpt_every: int = 50
    log_every: int = 10
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class History:
    step: list = field(default_factory=list)     # iteration numbers (1-based)
    loss: list = field(default_factory=list)     # training loss at each step
    time: list = field(default_factory=list)     # training wall time (s) up to each step, evals excluded
    evals: list = field(default_factory=list)    # [{"step": s, "time": t, **metrics}]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def wall_time(self) -> float:
        return self.time[-1] if self.time else 0.0


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, bias_lr_mult: float = 2.0):
    """Weights at ``lr`` with weight decay; biases at ``bias_lr_mult * lr`` without (Caffe's recipe)."""
    weights, biases = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith("bias") else weights).append(p)
    return [{"params": weights, "lr": lr, "weight_decay": weight_decay},
            {"params": biases, "lr": lr * bias_lr_mult, "weight_decay": 0.0}]


def pixel_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = VOID,
               reduction: str = "mean", weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel multinomial logistic loss; ``logits`` (N, C, H, W), ``target`` (N, H, W).

    Works for classification too: ``logits`` (N, C), ``target`` (N,).
    """
    if logits.shape[-2:] != target.shape[-2:] and logits.dim() == 4:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(target.shape)} differ in size: "
                         "the FCN's output must be cropped to the input size")
    return F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction=reduction,
                           weight=weight)


def _as_tensors(data):
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return data
    if hasattr(data, "tensors"):
        return data.tensors()
    xs, ys = zip(*(data[i] for i in range(len(data))))
    ys = [torch.as_tensor(y) for y in ys]
    return torch.stack(xs), torch.stack(ys)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The minibatch of step ``step``: a function of (seed, step) only, so resuming is exact."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randperm(n, generator=g)[: min(batch_size, n)]


def load_checkpoint(path, model, optimizer=None, state=None):
    """Load a checkpoint written by :func:`train` (or its already-read ``state``); returns (step, History)."""
    state = state if state is not None else torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    return state["step"], History(**state["history"])


def train(model, data, cfg: TrainConfig, *, device=None, loss_fn=pixel_loss, eval_fn=None,
          ckpt_path=None, desc: str = "train", batch_fn=None, progress: bool = True) -> History:
    """Train ``model`` on ``data`` for ``cfg.iters`` SGD steps; return the :class:`History`.

    - ``loss_fn(logits, target)`` defaults to :func:`pixel_loss`.
    - ``eval_fn(model) -> dict`` runs every ``cfg.eval_every`` steps and at the end (time excluded).
    - ``ckpt_path``: checkpoints are written there atomically every ``cfg.ckpt_every`` steps and at
      the end; if the file exists (same config), training resumes from it — a finished run returns
      its stored history at once.
    - ``batch_fn(x, y, step) -> (x, y)`` may transform each minibatch (e.g. loss sampling).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    X, Y = _as_tensors(data)
    if len(X) == 0:
        raise ValueError("no training data: the dataset is empty")
    prepare_model(model, device)  # channels_last on CUDA
    opt = torch.optim.SGD(param_groups(model, cfg.lr, cfg.weight_decay, cfg.bias_lr_mult),
                          lr=cfg.lr, momentum=cfg.momentum)
    step, hist = 0, History()
    ckpt_path = Path(ckpt_path) if ckpt_path else None
    if ckpt_path and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state.get("config_key") == cfg.key():
            step, hist = load_checkpoint(ckpt_path, model, opt, state)
        # a checkpoint from another configuration is ignored (and overwritten)

    def save():
        if ckpt_path:
            paths.atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "step": step, "history": hist.to_dict(),
                                     "config": dataclasses.asdict(cfg), "config_key": cfg.key()},
                                    ckpt_path)

    def evaluate():
        if eval_fn is not None:
            metrics = eval_fn(model)
            model.train()
            hist.evals.append({"step": step, "time": hist.wall_time, **metrics})

    model.train()
    bar = tqdm(total=cfg.iters, initial=step, desc=desc, disable=not progress, leave=False)
    elapsed = hist.wall_time
    while step < cfg.iters:
        sync(device)
        t0 = time.perf_counter()
        idx = batch_indices(len(X), cfg.batch_size, cfg.seed, step)
        x, y = X[idx].to(device, non_blocking=True), Y[idx].to(device, non_blocking=True)
        if batch_fn is not None:
            x, y = batch_fn(x, y, step)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            out = model(x)
        loss = loss_fn(out, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()} at step {step + 1}: "
                                     f"lower the learning rate (now {cfg.lr}) or check the labels")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        sync(device)
        elapsed += time.perf_counter() - t0
        hist.step.append(step)
        hist.loss.append(loss.item())
        hist.time.append(elapsed)
        bar.update(1)
        if step % max(cfg.log_every, 1) == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.iters:
            evaluate()
        if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < cfg.iters:
            save()
    bar.close()
    if not hist.evals or hist.evals[-1]["step"] != step:
        evaluate()
    save()
    return hist
