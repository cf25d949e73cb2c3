"""The four metrics of Section 5, from a confusion matrix accumulated over a whole dataset.

With n_ij the number of pixels of class i predicted as class j, n_cl the number of classes and
t_i = Σ_j n_ij the pixels of class i (Section 5):

- pixel accuracy        Σ_i n_ii / Σ_i t_i
- mean accuracy         (1/n_cl) Σ_i n_ii / t_i
- mean IU               (1/n_cl) Σ_i n_ii / (t_i + Σ_j n_ji − n_ii)
- frequency weighted IU (Σ_k t_k)^−1 Σ_i t_i n_ii / (t_i + Σ_j n_ji − n_ii)

Counts accumulate over the dataset (not averaged per image) and void pixels (255) are ignored.

Absent classes: a class with no pixel in the ground truth *and* none predicted has 0/0 for its IU.
Like the reference implementation (NumPy's nanmean), we leave it out of the means ("nan" policy).
A class absent from the ground truth but predicted somewhere has IU 0 and counts. SIFT Flow's rule
(``present_only=True``) averages only over classes present in the ground truth.

Also here: :func:`check_labels` (the label check every metric and bound uses), :func:`boundary_band`
and :func:`band_scores` — the same metrics restricted to pixels within w of a label boundary (the
"trimap" evaluation notebooks 04 and 06 use to show what mean IU over the whole image hides).
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from .data import VOID


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
              ignore_index: int = VOID) -> torch.Tensor:
    """Confusion matrix (num_classes, num_classes) int64 of one batch, on the tensors' device.

    Rows are ground truth, columns predictions. One unmasked ``bincount`` of ``target * n + pred``
    does it all: void pixels (255) fall in a block of bins of their own beyond the n × n matrix and
    are cut off, and so would any label value outside the classes, which is then reported. The index
    is computed in the smallest integer type that holds it (int16 for uint8 VOC labels), which is
    what makes this faster than the reference's masked NumPy bincount.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} and label shape {tuple(target.shape)} "
                         "differ: take the argmax over classes and crop/resize to the label first")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("confusion() takes integer class indices: take the argmax of the scores first")
    n = num_classes
    if ignore_index < n:  # a void value inside the class range (e.g. -1): move it past the classes
        target = torch.where(target == ignore_index, n, target.long())
        ignore_index = n
    if target.dtype == torch.uint8:
        t_hi = 255
    else:
        t_lo, t_hi = (int(v) for v in torch.aminmax(target))
        if t_lo < 0:
            raise ValueError(f"label value {t_lo} is negative: labels are class indices 0..{n - 1} "
                             f"or the void value {ignore_index}")
    p_lo, p_hi = (int(v) for v in torch.aminmax(pred))
    if p_lo < 0 or p_hi >= n:
        raise ValueError(f"predictions must be class indices in 0..{n - 1}, found {p_lo}..{p_hi}")
    top = (max(t_hi, ignore_index) + 1) * n
    dtype = torch.int16 if top < 2**15 else torch.int32 if top < 2**31 else torch.int64
    index = target.reshape(-1).to(dtype) * n + pred.reshape(-1).to(dtype)
    counts = torch.bincount(index, minlength=n * n)
    beyond = counts[n * n:].clone()
    void = (ignore_index - n) * n
    beyond[void: void + n] = 0
    if beyond.any():
        values = sorted({n + int(i) // n for i in torch.nonzero(beyond).flatten().tolist()})[:10]
        raise ValueError(f"label values {values} are outside the classes 0..{n - 1} and are not void "
                         f"({ignore_index}): check the dataset's class count or its void value")
    return counts[: n * n].reshape(n, n)


class ConfusionMatrix:
    """Accumulates a confusion matrix over a dataset; ``compute()`` gives the four metrics."""

    def __init__(self, num_classes: int, ignore_index: int = VOID, device=None):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> "ConfusionMatrix":
        """Add a batch. ``pred`` may be integer class indices (N, H, W) or floating scores
        (N, C, H, W) with C = ``num_classes`` (argmaxed here); anything else is refused, (N, 1, H, W)
        above all: class indices kept with ``keepdim=True`` would be argmaxed to class 0 everywhere."""
        if pred.dim() == target.dim() + 1:  # (N, C, H, W) scores against (N, H, W) labels
            n, shape = self.num_classes, tuple(pred.shape)
            expected = f"class indices {tuple(target.shape)} or scores (N, {n}, H, W)"
            if pred.shape[1] == 1:
                raise ValueError(f"predictions of shape {shape} are ambiguous (expected {expected}): "
                                 "squeeze(1) the class indices (or take argmax(1) without keepdim)")
            if not pred.is_floating_point():
                raise ValueError(f"integer predictions of shape {shape} have an extra dimension (expected "
                                 f"{expected}): give integer class indices as (N, H, W), or pass the "
                                 "floating scores themselves")
            if pred.shape[1] != n:
                raise ValueError(f"scores of shape {shape} have C = {pred.shape[1]} channels (expected "
                                 f"{expected}): C must equal num_classes ({n}); check the model's "
                                 "number of classes or the ConfusionMatrix's")
            pred = pred.argmax(1)                                       # (N, H, W)
        if self.mat.device != target.device:
            self.mat = self.mat.to(target.device)
        self.mat += confusion(pred, target, self.num_classes, self.ignore_index)
        return self

    def compute(self, present_only: bool = False) -> dict:
        return scores(self.mat, present_only=present_only)


def per_class_iu(mat: torch.Tensor) -> torch.Tensor:
    """IU of each class (NaN where the class is absent from ground truth and prediction)."""
    mat = mat.double()
    tp = mat.diag()
    union = mat.sum(1) + mat.sum(0) - tp
    return tp / union  # 0/0 → NaN


def scores(mat: torch.Tensor, present_only: bool = False) -> dict:
    """The four metrics of Section 5 (as fractions) and the per-class IU, from a confusion matrix.

    ``present_only`` averages mean accuracy and mean IU over the classes present in the ground truth
    only (the SIFT Flow convention of Table 5).
    """
    if mat.dim() != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {tuple(mat.shape)}")
    mat = mat.double()
    total = mat.sum()
    if total == 0:
        raise ValueError("the confusion matrix is empty: no labelled (non-void) pixel was seen")
    tp = mat.diag()
    t = mat.sum(1)  # pixels of each class in the ground truth
    iu = per_class_iu(mat)
    acc = tp / t
    if present_only:
        keep = t > 0
        iu_mean, acc_mean = iu[keep].nanmean(), acc[keep].nanmean()
    else:
        iu_mean, acc_mean = iu.nanmean(), acc.nanmean()
    fw = (t[t > 0] * iu[t > 0]).sum() / total
    return {
        "pixel_acc": (tp.sum() / total).item(),
        "mean_acc": acc_mean.item(),
        "mean_iu": iu_mean.item(),
        "fw_iu": fw.item(),
        "per_class_iu": iu.tolist(),
    }


@torch.no_grad()
def evaluate(model, dataset_or_loader, num_classes: int, device=None, batch_size: int = 16,
             ignore_index: int = VOID, present_only: bool = False) -> dict:
    """Run ``model`` over a dataset (or a DataLoader) and return :func:`scores` of its predictions."""
    from torch.utils.data import DataLoader, Dataset

    from .runtime import autocast
    device = device or next(model.parameters()).device
    loader = (DataLoader(dataset_or_loader, batch_size=batch_size)
              if isinstance(dataset_or_loader, Dataset) else dataset_or_loader)
    cm = ConfusionMatrix(num_classes, ignore_index, device)
    was_training = model.training
    model.eval()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with autocast(device):
            out = model(x)
        cm.update(out.float().argmax(1), y)
    model.train(was_training)
    return cm.compute(present_only=present_only)


def objects_right(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = VOID) -> dict:
    """How many objects a prediction gets right in class (the question Fig. 4 answers by eye).

    An object is the pixels of one non-background class in one image (``target`` (N, H, W)); it is
    right when the class predicted for most of those pixels (``pred`` (N, H, W), background included
    as a candidate) is its own. Returns ``{"objects", "right", "share"}``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    objects = right = 0
    for p, t in zip(pred, target):
        for c in t.unique().tolist():
            if c in (0, ignore_index):
                continue
            votes = torch.bincount(p[t == c].flatten().long())
            objects += 1
            right += int(votes.argmax().item() == c)
    return {"objects": objects, "right": right, "share": right / objects if objects else float("nan")}


# ---------------------------------------------------------------------- label checks and boundary bands
def check_factor(factor, what: str = "the downsampling factor") -> int:
    """``factor`` as an int ≥ 1, or a ValueError (floats, bools and strings are refused)."""
    try:
        if isinstance(factor, bool):
            raise TypeError
        f = operator.index(factor)
    except TypeError:
        raise ValueError(f"{what} must be a positive integer, got {factor!r} "
                         f"({type(factor).__name__})") from None
    if f < 1:
        raise ValueError(f"{what} must be a positive integer, got {f}")
    return f


def check_labels(labels, num_classes: int, ignore_index: int = VOID) -> torch.Tensor:
    """Labels as an int64 tensor (N, H, W): integer values in 0..num_classes-1 or ``ignore_index``."""
    lab = torch.as_tensor(labels)
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        raise TypeError(f"label maps hold integer class indices, got dtype {lab.dtype}")
    if lab.dim() == 2:
        lab = lab[None]
    if lab.dim() != 3:
        raise ValueError(f"a label map is (H, W) or a batch (N, H, W), got shape {tuple(lab.shape)}")
    lab = lab.long()
    bad = (lab != ignore_index) & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        values = torch.unique(lab[bad]).tolist()[:10]
        raise ValueError(f"label values {values} are outside the classes 0..{num_classes - 1} and are "
                         f"not void ({ignore_index}): is num_classes right? A VOC PNG must be read as "
                         "palette indices (np.array(Image.open(p)) on mode 'P'), not converted to RGB")
    return lab


def boundary_band(labels, width: int, ignore_index: int = VOID) -> torch.Tensor:
    """Pixels within ``width`` (Chebyshev distance) of a label change, void counted as a label.

    bool (N, H, W). VOC outlines objects with void, so its band hugs the void outline.
    """
    w = check_factor(width, "the band width")
    lab = torch.as_tensor(labels)
    lab = (lab[None] if lab.dim() == 2 else lab).float()[:, None]  # (N, 1, H, W)

    def pool(x):  # a (2w+1)² max filter, as a row pass then a column pass
        x = F.max_pool2d(x, (1, 2 * w + 1), stride=1, padding=(0, w))
        return F.max_pool2d(x, (2 * w + 1, 1), stride=1, padding=(w, 0))

    return (pool(lab) != -pool(-lab))[:, 0]


def band_confusion(pred, target, width: int | None, num_classes: int = 21,
                   ignore_index: int = VOID) -> torch.Tensor:
    """Confusion matrix of ``pred`` against ``target``, counting only the boundary band (None: all)."""
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} and label shape {tuple(target.shape)} "
                         "differ")
    target = check_labels(target, num_classes, ignore_index)
    pred = pred.reshape(target.shape).long()
    if width is not None:
        target = torch.where(boundary_band(target, width), target, ignore_index)
    return confusion(pred, target, num_classes, ignore_index)


def band_scores(pred, target, width: int, num_classes: int = 21, ignore_index: int = VOID) -> dict:
    """The four metrics restricted to pixels within ``width`` of a label boundary."""
    return scores(band_confusion(pred, target, width, num_classes, ignore_index))
