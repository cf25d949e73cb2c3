"""Exercises of notebook 06: dataset-level versus per-image mean IU, and a tiny upper bound (§5, App. A)."""
import torch

from .. import metrics, upper_bound
from ..exercises import expected, register

# Two images' confusion matrices (rows: truth, columns: prediction), three classes.
# Image A has no class 2 at all; image B has no class 1 at all.
IMAGE_CMS = (torch.tensor([[80, 5, 0],
                           [10, 5, 0],
                           [0, 0, 0]]),
             torch.tensor([[20, 0, 2],
                           [0, 0, 0],
                           [3, 0, 15]]))

# A 4×4 label (255: void) to downsample by f = 2 with the block majority, then upsample back.
EX_LABEL = torch.tensor([[0, 0, 1, 1],
                         [0, 1, 1, 1],
                         [2, 2, 0, 0],
                         [2, 0, 0, 255]])


def _iu_by_hand(n):
    """Per-class IU of a list-of-lists confusion matrix; None where the class is nowhere."""
    k = len(n)
    out = []
    for i in range(k):
        row, col = sum(n[i]), sum(n[j][i] for j in range(k))
        union = row + col - n[i][i]
        out.append(n[i][i] / union if union else None)
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values)


@expected("06.dataset_mean_iu",
          hint="Add the two matrices first (the paper accumulates counts over the dataset), then take "
               "the mean IU of the sum.")
def _dataset_mean_iu():
    return metrics.scores(IMAGE_CMS[0] + IMAGE_CMS[1])["mean_iu"]


@register("06.dataset_mean_iu")
def _dataset_mean_iu_by_hand():
    a, b = (m.tolist() for m in IMAGE_CMS)
    total = [[a[i][j] + b[i][j] for j in range(3)] for i in range(3)]
    return _mean(_iu_by_hand(total))


@expected("06.per_image_mean_iu",
          hint="Mean IU of each image alone (leave out a class that is neither in its truth nor in its "
               "prediction: 0/0), then the average of the two.")
def _per_image_mean_iu():
    return sum(metrics.scores(m)["mean_iu"] for m in IMAGE_CMS) / 2


@register("06.per_image_mean_iu")
def _per_image_mean_iu_by_hand():
    return sum(_mean(_iu_by_hand(m.tolist())) for m in IMAGE_CMS) / 2


@expected("06.majority_bound",
          hint="Each 2×2 block takes its most frequent non-void class; fill the block with it, build the "
               "3×3 confusion matrix against EX_LABEL (void ignored) and take its mean IU.")
def _majority_bound():
    return upper_bound.upper_bound(EX_LABEL, factors=[2], method="majority", num_classes=3)[2]["mean_iu"]


@register("06.majority_bound")
def _majority_bound_by_hand():
    lab = EX_LABEL.tolist()
    pred = [[0] * 4 for _ in range(4)]
    for by in (0, 2):
        for bx in (0, 2):
            votes = [0, 0, 0]
            for y in (by, by + 1):
                for x in (bx, bx + 1):
                    if lab[y][x] != 255:
                        votes[lab[y][x]] += 1
            winner = votes.index(max(votes))
            for y in (by, by + 1):
                for x in (bx, bx + 1):
                    pred[y][x] = winner
    n = [[0] * 3 for _ in range(3)]
    for y in range(4):
        for x in range(4):
            if lab[y][x] != 255:
                n[lab[y][x]][pred[y][x]] += 1
    return _mean(_iu_by_hand(n))
