"""Patchwise training is loss sampling (Sections 3.4 and 4.3, Fig. 5), and class balancing.

Section 3.4: whole-image training is patchwise training whose batch is *every* receptive field of
the units under the loss. Random patches are recovered by "restricting the loss to a randomly sampled
subset of its spatial terms (or, equivalently, applying a DropConnect mask between the output and the
loss)". Section 4.3 keeps "each final layer cell" with probability p and scales the number of images
per batch by 1/p, so the expected number of kept terms per batch is unchanged.

**Which pixels a cell owns.** The mask is drawn on the final-layer cells (the stride-32 score map of
FCN-32s, not the pixels), and the loss is on the upsampled, cropped output, so each output pixel must
inherit the keep/drop of one cell. With ``jump`` (stride) s and ``centre`` c (input coordinate of cell 0's
centre, the coordinate map of ``fcnlib.receptive_field``; the final crop is what puts cell k's centre
at c + s·k in the image), pixel q belongs to the cell whose centre is nearest::

    cell(q) = floor((q − c) / s + 1/2)          (a tie goes to the later cell)

It is the cell with the largest weight in the bilinear upsampling that makes pixel q. Equivalently
(:meth:`CellGrid.expand_nearest`): upsample the cell mask by s with nearest-neighbour repetition
(``repeat_interleave``) and crop it at ``floor(s/2 − c) − s·cell(0)``. Cells that own no pixel (those
over conv1's padding of 100) carry no loss term and are not drawn.

**Normalization.** The reference's "heavy" recipe sums the loss over pixels (``normalize: false``,
batch 1, learning rate 1e-10); the paper's recipe (batch 20, learning rate 1e-4) does not say, but a
sum over 20 × 500² pixels at 1e-4 would blow up, so we read it as a mean. We use the *mean over kept,
non-void pixels* (Caffe's VALID normalization, ``pixel_loss``'s default); ``reduction="sum"`` gives
the reference's. Either way, with p = 1 the masked loss *is* the whole-image loss: the same tensor,
the same gradients (tests/test_sampling.py). With p < 1 and 1/p images, the expected number of kept
terms equals whole-image training's, so the mean's step size (and the sum's expectation) is unchanged.

**True patchwise training** (:func:`patch_batch`): for each sampled cell, cut out the window holding
its whole receptive field (zero, i.e. the data mean, outside the image), run the net on the window
and put the loss on the window's centre cell only. For a net whose only padding is at the input (like
conv1's 100) the centre cell's scores equal the whole image's exactly; padding inside the net makes
them differ near borders (see fcnlib.convolutionalize).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from .receptive_field import Geometry
from .train import VOID, History, TrainConfig, pixel_loss, train
from .upsample import upsampling_matrix


# ------------------------------------------------------------------ which cell owns which pixel
@dataclass(frozen=True)
class CellGrid(Geometry):
    """The final layer's cells in input pixels, as the course's one geometry has them
    (:class:`fcnlib.receptive_field.Geometry`): cell k is centred at ``centre + jump·k`` and sees
    input pixels ``[start + jump·k, start + jump·k + rf)`` (negative: padding); here with the pixels
    each cell owns."""

    @classmethod
    def from_model(cls, model, size: int, node: str | None = None) -> "CellGrid":
        """The grid of ``model``'s final layer, read by ``fcnlib.receptive_field`` at input ``size``.

        ``node``: the layer (fx node name or module path); default: the last node with the largest
        jump (FCN-32s/16s/8s: the stride-32 score layer, before the upsampling). An
        :class:`fcnlib.models.FCN` is read along its ``paths()`` (default ``"score_fr"``)."""
        from torch import nn

        from .receptive_field import receptive_fields
        paths = model.paths() if callable(getattr(model, "paths", None)) else {}  # fcnlib.models.FCN
        if paths and (node in paths or node is None):
            # the named path from the input to the coarse scores, as one traceable chain
            model = nn.Sequential(*paths[node or ("score_fr" if "score_fr" in paths else "score_pool4")])
            node = None
        per_axis = [receptive_fields(model, input_shape=(size, size), axis=a) for a in (0, 1)]
        picks = []
        for rows in per_axis:
            if node is not None:
                row = [r for r in rows if node in (r.node, r.name)]
                if not row:
                    raise KeyError(f"no node {node!r}; nodes are {[r.node for r in rows]}")
            else:
                top = max(r.jump for r in rows)
                row = [r for r in rows if r.jump == top]
            picks.append(row[-1])
        h, w = picks
        if (h.jump, h.centre, h.first) != (w.jump, w.centre, w.first):
            raise ValueError(f"the final layer's grid differs between H and W ({h} vs {w}): square nets only")
        if h.jump.denominator != 1:
            raise ValueError(f"node {h.node} has a fractional jump {h.jump}: pick a layer before upsampling")
        return cls(int(h.rf), int(h.jump), Fraction(h.centre))

    def cell_of(self, q: int) -> int:
        """The cell owning input pixel ``q`` (one axis): the nearest cell centre."""
        return math.floor((Fraction(q) - Fraction(self.centre)) / self.jump + Fraction(1, 2))

    def span(self, n: int) -> tuple[int, int]:
        """(first cell, number of cells) owning the pixels 0 … n − 1 of one axis."""
        k0 = self.cell_of(0)
        return k0, self.cell_of(n - 1) - k0 + 1

    def shape(self, H: int, W: int) -> tuple[int, int]:
        """Cells (h, w) that own pixels of an H × W image: the cells a mask is drawn on."""
        return self.span(H)[1], self.span(W)[1]

    def index(self, n: int) -> torch.Tensor:
        """For each pixel 0 … n − 1 of one axis, its cell counted from the first owning cell."""
        k0 = self.cell_of(0)
        return torch.tensor([self.cell_of(q) - k0 for q in range(n)], dtype=torch.long)

    def expand(self, cell_mask: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(N, h, w) per-cell values → (N, H, W) per-pixel, each pixel taking its cell's value."""
        return cell_mask[:, self.index(H).to(cell_mask.device)][:, :, self.index(W).to(cell_mask.device)]

    def expand_nearest(self, cell_mask: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """The same by nearest-neighbour upsampling (×stride) of the cell mask and a crop."""
        s = self.jump
        up = cell_mask.repeat_interleave(s, dim=1).repeat_interleave(s, dim=2)  # (N, h·s, w·s)
        oy = math.floor(Fraction(s, 2) - Fraction(self.centre)) - s * self.span(H)[0]
        ox = math.floor(Fraction(s, 2) - Fraction(self.centre)) - s * self.span(W)[0]
        return up[:, oy:oy + H, ox:ox + W]


# ------------------------------------------------------------------ loss sampling
def images_per_batch(batch: int, p: float) -> int:
    """Images per batch at keep probability ``p`` for an *expected* batch of ``batch`` images' worth
    of loss terms: batch / p (Section 4.3), which must come out whole."""
    if not 0 < p <= 1:
        raise ValueError(f"keep probability p must be in (0, 1], got {p}")
    n = batch / p
    if abs(n - round(n)) > 1e-9:
        raise ValueError(f"batch {batch} / p {p} = {n:.3f} images is not a whole number: pick p so that "
                         f"it is (e.g. p = {batch}/{math.ceil(n)} or a batch divisible by 1/p)")
    return int(round(n))


def sampled_config(cfg: TrainConfig, p: float) -> TrainConfig:
    """``cfg`` with the batch scaled by 1/p (its ``batch_size`` is the expected batch)."""
    return dataclasses.replace(cfg, batch_size=images_per_batch(cfg.batch_size, p))


def cell_mask(n: int, shape: tuple[int, int], p: float, generator: torch.Generator | None = None):
    """Keep each of n × h × w cells independently with probability ``p``: bool (n, h, w)."""
    return torch.rand((n, *shape), generator=generator) < p  # rand ∈ [0, 1): p = 1 keeps all


def sampled_loss(logits, target, keep=None, reduction: str = "mean", weight=None):
    """The loss over kept pixels only: the mask between output and loss (Section 3.4).

    ``reduction="mean"`` averages over the kept, non-void pixels (Caffe's VALID); ``"sum"`` sums
    them (the reference's heavy recipe). ``keep=None`` or all-True is whole-image training."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if keep is not None:
        target = target.masked_fill(~keep, VOID)  # dropped pixels become void: no loss term
    return pixel_loss(logits, target, reduction=reduction, weight=weight)


class LossSampler:
    """``batch_fn`` for :func:`fcnlib.train.train`: marks the pixels of dropped cells void.

    The mask of step t depends only on (seed, t), so a resumed run draws the same masks. ``kept``
    records the fraction of cells kept at each step."""

    def __init__(self, grid: CellGrid, p: float, seed: int = 0):
        if not 0 < p <= 1:
            raise ValueError(f"keep probability p must be in (0, 1], got {p}")
        self.grid, self.p, self.seed, self.kept = grid, p, seed, []

    def mask(self, y, step: int) -> torch.Tensor:
        """Step ``step``'s per-pixel keep mask (N, H, W) for labels ``y``, constant on each cell's pixels."""
        g = torch.Generator().manual_seed(self.seed * 1_000_033 + step + 7)
        N, H, W = y.shape
        cells = cell_mask(N, self.grid.shape(H, W), self.p, g)  # (N, h, w), drawn on the CPU
        self.kept.append(cells.float().mean().item())
        return self.grid.expand(cells, H, W).to(y.device)      # (N, H, W)

    def __call__(self, x, y, step):
        return x, y.masked_fill(~self.mask(y, step), VOID)


def train_sampled(model, data, cfg: TrainConfig, p: float, grid: CellGrid, reduction: str = "mean",
                  weight=None, **kw) -> History:
    """Section 4.3's sampled training: ``cfg.batch_size`` is the expected batch; each step draws
    batch/p images and keeps each final-layer cell with probability p (p = 1: whole images)."""
    loss_fn = lambda out, y: sampled_loss(out, y, reduction=reduction, weight=weight)  # noqa: E731
    return train(model, data, sampled_config(cfg, p), loss_fn=loss_fn,
                 batch_fn=LossSampler(grid, p, cfg.seed), **kw)


# ------------------------------------------------------------------ Fig. 5 on a CPU budget
class AbovePool4(torch.nn.Module):
    """FCN-32s from pool4 up (conv5, fc6, fc7, ``score_fr``, then the fixed ×32 upsampling and the final
    crop as the matrix product of :func:`upsampling_matrix`), run on cached pool4 features: the same
    outputs as ``model`` on ``size``-px images, with conv1–conv4 frozen and computed once
    (:func:`pool4_features`). Fig. 5 on the embedded tier trains this: what sampling changes (which
    loss terms count, how many images a step forwards) is unchanged, and a step costs about a quarter
    of a whole one on a CPU. Shares ``model``'s parameters."""

    def __init__(self, model, size: int):
        super().__init__()
        self.to_pool5, self.fc, self.score_fr = model.to_pool5, model.fc, model.score_fr
        with torch.no_grad():
            cells = model.maps(torch.zeros(1, 3, size, size, device=model.upscore.weight.device))["score_fr"].shape[-1]
        self.register_buffer("A", upsampling_matrix(model.upscore, model.crop_offsets()["final"], cells, size))

    def forward(self, pool4):                                            # (N, C4, h4, w4)
        score = self.score_fr(self.fc(self.to_pool5(pool4)))            # (N, K, h, w), stride 32
        return torch.einsum("hk,nckl,wl->nchw", self.A, score, self.A)  # (N, K, size, size)


@torch.no_grad()
def pool4_features(model, X: torch.Tensor, chunk: int = 100) -> torch.Tensor:
    """pool4 of ``model`` (eval mode: no dropout below pool4 anyway) for images ``X`` (N, 3, H, W),
    ``chunk`` at a time; freezes conv1–conv4 (their parameters stop requiring gradients)."""
    for p in list(model.to_pool3.parameters()) + list(model.to_pool4.parameters()):
        p.requires_grad_(False)
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model.to_pool4(model.to_pool3(X[i:i + chunk].to(dev))) for i in range(0, len(X), chunk)])
    model.train(was)
    return out                                                            # (N, C4, H/16, W/16)


# ------------------------------------------------------------------ true patchwise training
def patch_plan(grid: CellGrid) -> tuple[int, int]:
    """(j, P): a P × P window whose cell j (both axes) has its whole receptive field inside it."""
    j = max(0, math.ceil(-grid.start / grid.jump))
    return j, grid.start + grid.jump * j + grid.rf


def all_cells(grid: CellGrid, N: int, H: int, W: int) -> torch.Tensor:
    """Every (image, cell row, cell column) that owns pixels, absolute cell indices: (M, 3)."""
    (i0, h), (j0, w) = grid.span(H), grid.span(W)
    n, i, j = torch.meshgrid(torch.arange(N), torch.arange(i0, i0 + h), torch.arange(j0, j0 + w),
                             indexing="ij")
    return torch.stack([n.flatten(), i.flatten(), j.flatten()], 1)


def patch_batch(x: torch.Tensor, y: torch.Tensor, cells: torch.Tensor, grid: CellGrid):
    """Windows around ``cells`` (M, 3) of images ``x`` (N, C, H, W) with labels ``y`` (N, H, W):
    crops (M, C, P, P), zero outside the image, and labels (M, P, P), void except on the pixels the
    centre cell owns (the one loss term of each patch)."""
    j, P = patch_plan(grid)
    s = grid.jump
    N, C, H, W = x.shape
    lo = min(0, s * (int(cells[:, 1:].min()) - j))                   # how far windows reach out
    hi = max(H, W, s * (int(cells[:, 1:].max()) - j) + P)
    pad = (-lo, hi - W, -lo, hi - H)
    xp = F.pad(x, pad)                                              # (N, C, H', W'), zero = mean
    yp = F.pad(y, pad, value=VOID)
    own = grid.index(P) + grid.span(P)[0] == j                      # (P,) pixels of cell j in a window
    crops, labels = [], []
    for n, ci, cj in cells.tolist():
        oy, ox = s * (ci - j) - lo, s * (cj - j) - lo
        crops.append(xp[n, :, oy:oy + P, ox:ox + P])
        lab = yp[n, oy:oy + P, ox:ox + P].clone()
        lab[~(own[:, None] & own[None, :]).to(lab.device)] = VOID
        labels.append(lab)
    return torch.stack(crops), torch.stack(labels)


def patchwise_step(model, x, y, cells, grid, chunk: int | None = None, loss_fn=pixel_loss):
    """The forward and backward passes of true patchwise training over ``cells``: one window per
    cell, fed ``chunk`` at a time (None: all in one batch; 1: one by one), each chunk's mean loss
    weighted by its share of the windows; gradients accumulate in the model. Returns the loss."""
    crops, labels = patch_batch(x, y, cells, grid)
    chunk = chunk or len(crops)
    total = 0.0
    for a in range(0, len(crops), chunk):
        loss = loss_fn(model(crops[a:a + chunk]), labels[a:a + chunk]) * (min(chunk, len(crops) - a) / len(crops))
        loss.backward()
        total += loss.item()
    return total


def break_even_p(t_whole: float, t_patch: float, cells: float) -> float:
    """Keep probability above which loss sampling beats patchwise training per kept term (Sec. 4.3):
    one image costs ``t_whole`` for ``cells`` terms, sampling keeps p·cells of them; a patch costs
    ``t_patch`` for one term. Sampling is cheaper when t_whole / (p·cells) < t_patch."""
    return t_whole / (cells * t_patch)


# ------------------------------------------------------------------ class balancing
def median_frequency_weights(Y: torch.Tensor, num_classes: int, ignore_index: int = VOID):
    """Median-frequency class weights (Eigen & Fergus): freq_c = pixels of class c / pixels of the
    images where c appears; w_c = median(freq) / freq_c. Classes absent from ``Y`` get weight 1."""
    Y = Y.reshape(len(Y), -1)
    valid = Y != ignore_index
    counts = torch.stack([torch.bincount(y[v], minlength=num_classes)[:num_classes]
                          for y, v in zip(Y, valid)]).double()  # (N, C)
    present = counts > 0
    pixels = valid.sum(1, keepdim=True).double()                 # (N, 1)
    denom = (pixels * present).sum(0)                            # pixels of images holding c
    seen = denom > 0
    freq = torch.where(seen, counts.sum(0) / denom.clamp(min=1), torch.zeros_like(denom))
    med = freq[seen].median()
    w = torch.ones(num_classes, dtype=torch.float64)
    w[seen] = med / freq[seen]
    return w.float()


# ------------------------------------------------------------------ curves
def smooth(values, window: int = 5) -> list[float]:
    """Trailing moving average (the first points average what there is)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def first_reach(xs, losses, level: float):
    """The first ``xs`` value (iteration or seconds) where ``losses`` ≤ ``level``; None if never."""
    return next((x for x, l in zip(xs, losses) if l <= level), None)
