"""A lean training loop (in the manner of nanoGPT's train.py) with the paper's recipe as defaults.

Section 4.3: SGD with momentum 0.9, a fixed learning rate, weight decay 5e-4, biases at twice the
learning rate, per-pixel multinomial logistic loss with void pixels ignored. The loop keeps a history
(loss, wall time, evaluations) for curves, writes checkpoints atomically and resumes from the last one
after a crash, and stops with a message naming the step if the loss turns NaN or infinite.

Data is a pair of tensors ``(X, Y)`` held in memory (the embedded datasets are small) or any Dataset;
minibatches are drawn with a generator seeded by (seed, step), so a resumed run sees the same batches.

Runs you can trust:

- **Own random streams.** The loop's random draws (dropout) come from streams seeded by ``cfg.seed``
  alone, and the caller's streams are put back when it returns: a stage trained, resumed or loaded
  from its checkpoint leaves everything after it unchanged.
- **Exact resume.** A checkpoint holds the model, the optimizer, the step, the history and every
  random state the loop draws from; a run killed at any point and started again reaches the very
  same weights and losses (on a CPU, same thread count).
- **Checkpoints keyed by the run.** A checkpoint records its config, a fingerprint of the data and
  of the model it started from. A checkpoint of another run at the same path is neither reused nor
  overwritten: :class:`CheckpointMismatchError` says what differs and what to do. An unreadable
  (truncated, corrupt) checkpoint is moved aside with a warning naming it, and training starts over.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import paths, runtime
from .data import VOID
from .fast import windowed_upsampling
from .runtime import autocast, channels_last, prepare_model, sync


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


class CheckpointMismatchError(RuntimeError):
    """A checkpoint at the given path belongs to another run (config, data or starting model)."""


def fingerprint(*items) -> str:
    """A short hash of tensors, state dicts and tuples/lists of them (shapes, dtypes and bytes)."""
    h = hashlib.sha1()

    def feed(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            for k in sorted(x):
                h.update(str(k).encode())
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            for v in x:
                feed(v)
        else:
            h.update(repr(x).encode())
    for item in items:
        feed(item)
    return h.hexdigest()[:12]


def _stream_seed(seed: int) -> int:
    """The seed of the loop's own random streams (dropout…), apart from the minibatch order's."""
    return int(hashlib.sha1(f"train-streams:{seed}".encode()).hexdigest()[:15], 16)


def read_checkpoint(path) -> dict | None:
    """A checkpoint's contents (``weights_only`` load); ``None`` after moving an unreadable file aside."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "model" not in state or "step" not in state:
            raise ValueError("it holds no training state")
        return state
    except Exception as e:  # truncated zip, bad pickle, wrong content: never fatal, never silent
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(aside)
        warnings.warn(f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:200]}); it was moved "
                      f"to {aside} and this run trains from the start", stacklevel=2)
        return None


def _differences(stored: dict | None, wanted: dict) -> list[str]:
    if stored is None:
        return ["it was written by an older version of the course (it records no run identity)"]
    out = []
    for key in ("config", "data", "init"):
        a, b = stored.get(key), wanted.get(key)
        if a == b:
            continue
        if key == "config" and isinstance(a, dict):
            out += [f"config {k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)]
        else:
            what = {"data": "the training data", "init": "the starting model (weights or architecture)"}[key]
            out.append(f"{what} differ (fingerprint {a} there, {b} now)")
    return out


def load_checkpoint(path, model, optimizer=None, state=None):
    """Load a checkpoint written by :func:`train` (or its already-read ``state``); returns (step, History)."""
    state = state if state is not None else read_checkpoint(path)
    if state is None:
        raise FileNotFoundError(f"no readable checkpoint at {path}")
    model.load_state_dict(state["model"])
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    return state["step"], History(**state["history"])


def sgd_step(model, opt, x, y, loss_fn=pixel_loss, device=None) -> torch.Tensor:
    """One SGD step, the way the course trains: the batch in channels_last (the model is, by
    :func:`fcnlib.runtime.prepare_model`), bf16 autocast on CUDA, loss, backward, update. Returns the
    loss; if it is not finite, no update is made (the caller stops there)."""
    device = device or x.device
    with autocast(device):
        out = model(channels_last(x))
    loss = loss_fn(out, y)
    if not torch.isfinite(loss):
        return loss.detach()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train(model, data, cfg: TrainConfig, *, device=None, loss_fn=pixel_loss, eval_fn=None,
          ckpt_path=None, desc: str = "train", batch_fn=None, progress: bool = True,
          data_id: str | None = None) -> History:
    """Train ``model`` on ``data`` for ``cfg.iters`` SGD steps; return the :class:`History`.

    - ``loss_fn(logits, target)`` defaults to :func:`pixel_loss`.
    - ``eval_fn(model) -> dict`` runs every ``cfg.eval_every`` steps and at the end (time excluded).
    - ``ckpt_path``: checkpoints are written there atomically every ``cfg.ckpt_every`` steps and at
      the end; if the file exists and belongs to this run (same config, data and starting model),
      training resumes from it exactly — a finished run returns its stored history at once. A
      checkpoint of another run raises :class:`CheckpointMismatchError` and is left untouched.
    - ``data_id``: names the data in the checkpoint's identity (default: a fingerprint of the tensors).
    - ``batch_fn(x, y, step) -> (x, y)`` may transform each minibatch (e.g. loss sampling).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    X, Y = _as_tensors(data)
    if len(X) == 0:
        raise ValueError("no training data: the dataset is empty")
    identity = {"config": dataclasses.asdict(cfg), "data": data_id or fingerprint(X, Y),
                "init": fingerprint(model.state_dict())}
    prepare_model(model, device)  # channels_last
    opt = torch.optim.SGD(param_groups(model, cfg.lr, cfg.weight_decay, cfg.bias_lr_mult),
                          lr=cfg.lr, momentum=cfg.momentum)
    step, hist, state = 0, History(), None
    ckpt_path = Path(ckpt_path) if ckpt_path else None
    if ckpt_path and ckpt_path.exists():
        state = read_checkpoint(ckpt_path)
        if state is not None:
            diff = _differences(state.get("identity"), identity)
            if diff:
                raise CheckpointMismatchError(
                    f"{desc}: the checkpoint {ckpt_path} belongs to another run: " + "; ".join(diff)
                    + ". It was neither used nor overwritten. Pass another checkpoint path for this run, "
                    "or delete (or move) that file to train this one from the start.")
            step, hist = load_checkpoint(ckpt_path, model, opt, state)

    outer = runtime.rng_state()        # the caller's streams, put back on the way out
    runtime.seed_everything(_stream_seed(cfg.seed))
    if state is not None and "rng" in state:
        runtime.set_rng_state(state["rng"])
    try:
        with windowed_upsampling(model):  # speed only (fcnlib.fast): the same sums, a cheaper step
            _loop(model, X, Y, cfg, opt, step, hist, device, loss_fn, eval_fn, ckpt_path, identity, desc,
                  batch_fn, progress)
    finally:
        runtime.set_rng_state(outer)
    return hist


def _loop(model, X, Y, cfg, opt, step, hist, device, loss_fn, eval_fn, ckpt_path, identity, desc,
          batch_fn, progress):
    def save():
        if ckpt_path:
            paths.atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "step": step, "history": hist.to_dict(), "rng": runtime.rng_state(),
                                     "identity": identity}, ckpt_path)

    def evaluate():
        if eval_fn is not None:
            metrics = eval_fn(model)
            model.train()
            hist.evals.append({"step": step, "time": hist.wall_time, **metrics})

    start = step
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
        loss = sgd_step(model, opt, x, y, loss_fn, device)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()} at step {step + 1}: "
                                     f"lower the learning rate (now {cfg.lr}) or check the labels")
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
    n_evals = len(hist.evals)
    if not hist.evals or hist.evals[-1]["step"] != step:
        evaluate()
    if step != start or len(hist.evals) != n_evals:   # a finished checkpoint loaded as is stays as is
        save()
