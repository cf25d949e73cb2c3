"""Section 3.1's efficiency claim, measured: one dense pass against the classifier on every window.

"AlexNet takes 1.2 ms to produce the classification scores of a 227×227 image while the fully
convolutional net takes 22 ms to produce a 10×10 grid of outputs from a 500×500 image, which is more
than 5 times faster than the naïve approach." :func:`dense_vs_naive` times both on any device; FLOPs
(:func:`flops`) explain the ratio: the convolutions' work is shared by overlapping windows, the fully
connected layers' is not (one fc6/fc7/fc8 evaluation per output cell in both paths).

Two settings decide what is compared, and both are stated in every result:

* ``geometry``: torchvision's AlexNet pads conv1 by 2 and rounds its pooling down, giving a 9×9 grid
  on 500×500 from 224-px windows; the paper's Caffe AlexNet has an unpadded conv1 and pooling that
  rounds *up* (Caffe's rule), giving the paper's 10×10 grid from 227-px windows (:func:`caffe_geometry`).
  The last row and column of those windows overhang the image by 15 px; the naive path zero-fills them.
* ``gemm``: on a CPU both paths' fully connected layers can run on oneDNN's inner product
  (:func:`fcnlib.fast.onednn_gemm`, ``fcnlib.fast.PackedGemm``) instead of MKL's GEMM: on AMD processors much faster.
  Whatever is chosen is applied to *both* paths.
"""
from __future__ import annotations

import copy
import re

import torch
from torch import nn

from . import runtime
from .convolutionalize import caffe_arithmetic, convolutionalize, patches
from .fast import fc_as_gemm, onednn_gemm

GEOMETRIES = ("torchvision", "caffe")
GEMMS = ("auto", "default", "onednn")


def flops(model: nn.Module, shape, per_module: bool = False):
    """Forward FLOPs (a multiply-add counts 2) of ``model`` on an input of ``shape``, counted on the
    meta device with torch.utils.flop_counter (nothing is computed); ``per_module``: by submodule
    name (:func:`fcnlib.runtime.flop_count`)."""
    meta = copy.deepcopy(model).to("meta")
    return runtime.flop_count(meta, torch.empty(shape, device="meta"), per_module=per_module)


def caffe_geometry(classifier: nn.Module) -> nn.Module:
    """A copy with Caffe's AlexNet arithmetic, as the paper ran it: the first convolution unpadded and
    every max pooling rounding its output size up (``ceil_mode``). Same layers and weights. On 500×500
    the convolutionalized torchvision AlexNet then gives the paper's 10×10 grid (instead of 9×9)."""
    features = getattr(classifier, "features", None)
    if not isinstance(features, nn.Module) or not any(isinstance(m, nn.Conv2d) for m in features.modules()):
        raise ValueError(f"caffe_geometry needs a classifier with convolutional `features` (as torchvision's "
                         f"AlexNet and VGG have); got {type(classifier).__name__}")
    twin = copy.deepcopy(classifier)
    caffe_arithmetic(twin.features.modules(), pad=0)
    return twin


def resolve_gemm(gemm: str, device: torch.device) -> str:
    """``auto`` → ``onednn`` on a CPU where PyTorch has oneDNN, else ``default`` (cuBLAS/cuDNN, MKL)."""
    if gemm not in GEMMS:
        raise ValueError(f"gemm={gemm!r}: choose one of {GEMMS}")
    if gemm == "auto":
        return "onednn" if device.type == "cpu" and torch.backends.mkldnn.is_available() else "default"
    if gemm == "onednn" and device.type != "cpu":
        raise ValueError(f"gemm='onednn' runs on a CPU only (device is {device}); use 'auto' or 'default'")
    return gemm


# ----------------------------------------------------------------------------- the measurement
def dense_vs_naive(classifier: nn.Module, size: int = 500, patch: int | None = None, device="cpu",
                   reps: int = 3, backward: bool = True, single: int | None = None,
                   batch_size: int | None = None, channels_last: bool = True,
                   geometry: str = "torchvision", gemm: str = "auto", min_time: float = 0.2) -> dict:
    """Section 3.1's comparison, measured: the convolutionalized net in one pass over a ``size``² image
    against the classifier on the ``patch``² window of every output cell (at the net's stride): all
    windows in batches of ``batch_size`` (None: one batch), and one window at a time (``single``: time
    that many and scale to all). Forward, and backward (weight gradients of the summed scores; the
    forward pass off the clock). ``patch`` defaults to 224 (torchvision) or 227 (``geometry="caffe"``).
    Both nets in eval mode, the same memory format and the same ``gemm``; windows are cut beforehand.
    Each figure is the best of ``reps`` after a warm-up, the paths interleaved so that a busy machine
    slows them alike; within a rep, a forward pass shorter than ``min_time`` seconds is run again until
    that much time has passed and the mean taken (as ``timeit`` does), so that a short pass is not
    measured from one noisy call while a long one averages its noise out."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry={geometry!r}: choose one of {GEOMETRIES}")
    device = runtime.pick_device(device)
    gemm = resolve_gemm(gemm, device)
    patch = patch or (227 if geometry == "caffe" else 224)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    clf = caffe_geometry(classifier) if geometry == "caffe" else copy.deepcopy(classifier)
    clf = clf.to(device).eval().to(memory_format=fmt)
    net = fc_as_gemm(convolutionalize(clf)).eval().to(memory_format=fmt)  # fc6–fc8 as the Linears' GEMM
    if gemm == "onednn":
        clf, net = onednn_gemm(clf), onednn_gemm(net)
    (h, w), stride = net.grid(size), net.geometry.jump
    x = torch.randn(1, 3, size, size, device=device).contiguous(memory_format=fmt)
    overhang = max(0, (max(h, w) - 1) * stride + patch - size)       # Caffe's rounded-up cells' windows
    p, grid, _ = patches(nn.functional.pad(x, (0, overhang, 0, overhang)), patch, stride)
    p = p.contiguous(memory_format=fmt)                              # (h·w, 3, patch, patch)
    if grid != (h, w):
        raise ValueError(f"{patch}-px windows give a {grid[0]}×{grid[1]} grid, the dense net {h}×{w}")
    n = len(p)
    k, bs = min(single or n, n), batch_size or n
    paths = {"dense": lambda m: [net(x)],
             "batched": lambda m: [clf(p[i:i + bs]) for i in range(0, n, bs)],
             "single": lambda m: [clf(p[i:i + 1]) for i in range(m)]}
    count = {"dense": 1, "batched": n, "single": k}
    clock = runtime.Clock(device)
    best = {}
    for rep in range(reps + 1):                    # rep 0 warms up (oneDNN/cuDNN choose their kernels)
        for path, fn in paths.items():
            m = count[path] if rep else 1
            with torch.inference_mode():           # a short pass is repeated for min_time s: per-call mean
                clock.start()
                calls, t = 0, 0.0
                while calls == 0 or (rep and t < min_time):
                    fn(m); calls += 1; t = clock.stop()
                t /= calls
            times = [("forward", t)]
            if backward:
                clf.zero_grad(set_to_none=True), net.zero_grad(set_to_none=True)
                outs, t = fn(m), 0.0
                for out in outs:
                    clock.start(); out.sum().backward(); t += clock.stop()
                times.append(("backward", t))
                del outs
            for d, t in times:
                if rep:
                    best[d, path] = min(best.get((d, path), float("inf")), t * (n / k if path == "single" else 1))
    ms = {d: {path: best[d, path] * 1e3 for path in paths} for d in ("forward", "backward") if (d, "dense") in best}
    f_dense, f_patch = flops(net, (1, 3, size, size)), flops(clf, (1, 3, patch, patch))
    return {"device": str(device), "threads": torch.get_num_threads(), "input": size, "patch": patch,
            "geometry": geometry, "gemm": gemm, "overhang": overhang,
            "grid": [h, w], "cells": n, "single_timed": k, "batch_size": bs, "channels_last": channels_last,
            "reps": reps, "min_time": min_time, "ms": ms, "speedup": {f"{d}_{path}": ms[d][path] / ms[d]["dense"]
                                                 for d in ms for path in ("batched", "single")},
            "gflops_dense": f_dense / 1e9, "gflops_naive": n * f_patch / 1e9,
            "flop_ratio": n * f_patch / f_dense}


def paper_speedups() -> dict:
    """The paper's own §3.1 ratios, from its timings (fcnlib.paper.timing) and its grid: naive = the
    grid's cells × one image's time, against the dense map's time."""
    from . import paper
    t = paper.timing()
    m = re.search(r"([0-9]+)×([0-9]+) grid of outputs", re.sub(r"\s+", " ", paper.text()))
    cells = int(m.group(1)) * int(m.group(2))
    return {"grid": [int(m.group(1)), int(m.group(2))], "cells": cells, **t,
            "forward": cells * t["forward_single_ms"] / t["forward_dense_ms"],
            "backward": cells * t["backward_single_ms"] / t["backward_dense_ms"]}
