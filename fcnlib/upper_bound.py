"""Appendix A: an upper bound on mean IU for prediction at a coarse scale — and what it hides.

The paper downsamples ground truth by a factor f, upsamples it back and scores it against the
original: the best any prediction made on an f-times coarser grid could do. It does not say how it
downsampled, so :func:`degrade` offers four ways (``method``):

- ``"topleft"``  each f×f block takes the label of its top-left pixel (plain strided sampling);
- ``"center"``   … of the pixel holding the block's centre (``i·f + len//2`` along each axis, where
  ``len`` is the part of the block inside the image);
- ``"majority"`` … the most frequent class of the block, void excluded (ties → lowest class index);
- ``"area"`` (default) each block keeps the fraction of its area covered by each class (a one-hot
  area average, void counted as no class), the fractions are upsampled bilinearly and the argmax is
  taken. This is the FCN's own pipeline — coarse class scores, fixed bilinear upsampling to the
  pixels, argmax (Sections 3.3 and 4.1) — fed with the best scores a cell could hold, so it is the
  bound that speaks about FCNs. It also places boundaries within a cell (a cell 30 % covered pulls
  the boundary its way), which nearest-neighbour upsampling cannot.

The first three upsample by repeating each cell f×f times, so a label that is constant on f×f blocks
comes back exactly. ``"area"`` does not give that guarantee: bilinear interpolation rounds every
convex corner of a region (a pixel near the corner of its cell gets weight (½+½/f)² < ½ from it).

A sampled void pixel (``topleft``/``center``) falls back to the block's majority; a block that is all
void predicts background, which never counts since all its pixels are void. Sizes that are not
multiples of f: the label is padded with void on the bottom and right to ceil(H/f)·f × ceil(W/f)·f,
so the grid has ceil(H/f) × ceil(W/f) cells, like an FCN's output grid, and the prediction is cropped
back to H × W. Everything is vectorized over a batch on the labels' device (``bincount`` over block
ids for the counts, ``interpolate`` for the upsampling): no Python loop over pixels.

Appendix A's conclusion — "mean IU is not a good measure of fine-scale accuracy" — is made visible
by :func:`fcnlib.metrics.band_scores`: the same metrics restricted to a band of width w around label boundaries
(a "trimap" evaluation).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from .metrics import VOID, boundary_band, check_factor, check_labels, confusion, scores

METHODS = ("topleft", "center", "majority", "area")
DEFAULT_METHOD = "area"
FACTORS = (128, 64, 32, 16, 8, 4)  # Appendix A's columns


def coarse_shape(height: int, width: int, factor: int) -> tuple[int, int]:
    """The grid of cells at ``factor``: ceil(H/f) × ceil(W/f) (partial blocks at the bottom/right)."""
    f = check_factor(factor)
    return math.ceil(height / f), math.ceil(width / f)


def block_counts(lab: torch.Tensor, f: int, C: int, ignore_index: int = VOID) -> torch.Tensor:
    """Pixels of each class in each f×f block of checked labels (N, H, W): int64 (N, C, Hc, Wc);
    void and padding not counted."""
    N, H, W = lab.shape
    Hc, Wc = coarse_shape(H, W, f)
    lab = F.pad(lab, (0, Wc * f - W, 0, Hc * f - H), value=ignore_index)  # (N, Hc·f, Wc·f)
    cls = torch.where(lab == ignore_index, C, lab)  # void → an extra bin C, cut off below
    block = torch.arange(N * Hc * Wc, device=lab.device).view(N, Hc, 1, Wc, 1)
    index = (block * (C + 1) + cls.view(N, Hc, f, Wc, f)).reshape(-1)
    counts = torch.bincount(index, minlength=N * Hc * Wc * (C + 1)).view(N, Hc, Wc, C + 1)
    return counts[..., :C].permute(0, 3, 1, 2)  # (N, C, Hc, Wc)


def _sample(lab: torch.Tensor, f: int, centre: bool) -> torch.Tensor:
    """The label at one pixel of each block (top-left or centre), (N, Hc, Wc)."""
    _, H, W = lab.shape
    Hc, Wc = coarse_shape(H, W, f)

    def pos(n, size):
        start = torch.arange(n, device=lab.device) * f
        if not centre:
            return start
        return start + (size - start).clamp(max=f) // 2  # centre of the part inside the image

    return lab[:, pos(Hc, H)[:, None], pos(Wc, W)[None, :]]


def _area(counts: torch.Tensor, f: int, H: int, W: int) -> torch.Tensor:
    """Area fractions (N, C, Hc, Wc) → bilinear upsampling → argmax, over each image's classes only."""
    N, C, Hc, Wc = counts.shape
    rows = (H - torch.arange(Hc, device=counts.device) * f).clamp(max=f)
    cols = (W - torch.arange(Wc, device=counts.device) * f).clamp(max=f)
    inside = rows[:, None] * cols[None, :]  # (Hc, Wc) in-image pixels of each block
    present = counts.sum((2, 3)) > 0  # (N, C)
    K = max(int(present.sum(1).max()), 1)
    classes = torch.arange(C, device=counts.device)
    # each image's present classes in ascending order (ties → lowest class), padded with absent ones
    idx = torch.where(present, classes, classes + C).argsort(1)[:, :K]  # (N, K)
    frac = counts.gather(1, idx[:, :, None, None].expand(N, K, Hc, Wc)).float() / inside
    up = F.interpolate(frac, size=(Hc * f, Wc * f), mode="bilinear", align_corners=False)
    best = up[:, :, :H, :W].max(1).indices  # (N, H, W) in 0..K-1; first max on ties, faster than argmax
    return idx.gather(1, best.view(N, -1)).view(N, H, W)


def _degrade(lab: torch.Tensor, f: int, method: str, C: int, ignore_index: int) -> torch.Tensor:
    N, H, W = lab.shape
    counts = block_counts(lab, f, C, ignore_index)  # (N, C, Hc, Wc)
    if method == "area":
        return _area(counts, f, H, W)
    majority = counts.argmax(1)  # (N, Hc, Wc); ties → lowest class, all-void → 0
    if method == "majority":
        coarse = majority
    else:
        coarse = _sample(lab, f, centre=method == "center")
        coarse = torch.where(coarse == ignore_index, majority, coarse)
    rows = torch.arange(H, device=lab.device) // f
    cols = torch.arange(W, device=lab.device) // f
    return coarse[:, rows[:, None], cols[None, :]]  # nearest upsampling: each cell repeated f×f


def degrade(labels, factor: int, method: str = DEFAULT_METHOD, num_classes: int = 21,
            ignore_index: int = VOID) -> torch.Tensor:
    """Downsample ground truth by ``factor`` and upsample it back (Appendix A): int64 (N, H, W).

    ``labels`` (H, W) or (N, H, W); the result has the batch dimension and no void pixel.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    f = check_factor(factor)
    return _degrade(check_labels(labels, num_classes, ignore_index), f, method, num_classes,
                    ignore_index)


def _batches(labels, batch_size: int):
    """Consecutive label maps of equal shape, stacked (N, H, W), at most ``batch_size`` at a time."""
    if isinstance(labels, torch.Tensor) and labels.dim() in (2, 3):
        labels = labels[None] if labels.dim() == 2 else labels
        yield from labels.split(batch_size)
        return
    group = []
    for lab in labels:
        lab = torch.as_tensor(lab)
        if group and (lab.shape != group[0].shape or len(group) == batch_size):
            yield torch.stack(group)
            group = []
        group.append(lab)
    if group:
        yield torch.stack(group)


def upper_bound(labels: torch.Tensor | Iterable, factors=FACTORS, method: str = DEFAULT_METHOD,
                num_classes: int = 21, ignore_index: int = VOID, band_width: int | None = None,
                batch_size: int = 8, device=None) -> dict[int, dict]:
    """Appendix A's bound: ``{factor: scores}`` of degraded against original labels, dataset-level.

    ``labels``: a tensor (N, H, W) or an iterable of (H, W) maps (sizes may differ, as in VOC).
    With ``band_width``, each entry also holds ``"band"``: the scores within that boundary band.
    Confusion matrices accumulate over the dataset, void ignored (Section 5). Maps of one size are
    processed ``batch_size`` at a time on ``device`` (default: where the labels are).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    factors = [check_factor(f) for f in factors]
    if band_width is not None:
        check_factor(band_width, "the band width")
    C = num_classes
    mats = {f: torch.zeros(C, C, dtype=torch.int64, device=device) for f in factors}
    bands = {f: torch.zeros(C, C, dtype=torch.int64, device=device) for f in factors}
    for lab in _batches(labels, batch_size):
        lab = check_labels(lab.to(device) if device is not None else lab, C, ignore_index)
        band = None if band_width is None else boundary_band(lab, band_width, ignore_index)
        for f in factors:
            pred = _degrade(lab, f, method, C, ignore_index)  # (N, H, W)
            mats[f] = mats[f].to(lab.device) + confusion(pred, lab, C, ignore_index)
            if band is not None:
                bands[f] = bands[f].to(lab.device) + confusion(
                    pred, torch.where(band, lab, ignore_index), C, ignore_index)
    out = {}
    for f in factors:
        out[f] = scores(mats[f])
        if band_width is not None:
            out[f]["band"] = scores(bands[f])
    return out
