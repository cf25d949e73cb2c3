"""Exercises of notebook 06: dataset-level versus per-image mean IU, and a tiny upper bound (§5, App. A)."""
import torch

from .. import metrics, upper_bound
from ..exercises import expected, function

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


@expected("06.dataset_mean_iu",
          hint="Add the two matrices first (the paper accumulates counts over the dataset), then take "
               "the mean IU of the sum.")
def _dataset_mean_iu():
    return metrics.scores(IMAGE_CMS[0] + IMAGE_CMS[1])["mean_iu"]


@expected("06.per_image_mean_iu",
          hint="Mean IU of each image alone (leave out a class that is neither in its truth nor in its "
               "prediction: 0/0), then the average of the two.")
def _per_image_mean_iu():
    return sum(metrics.scores(m)["mean_iu"] for m in IMAGE_CMS) / 2


@expected("06.majority_bound",
          hint="Each 2×2 block takes its most frequent non-void class; fill the block with it, build the "
               "3×3 confusion matrix against EX_LABEL (void ignored) and take its mean IU.")
def _majority_bound():
    return upper_bound.upper_bound(EX_LABEL, factors=[2], method="majority", num_classes=3)[2]["mean_iu"]


# 06.mean_iu: write mean IU from a confusion matrix, with the absent-class rule (§5)
def _miu_cases():
    return [(IMAGE_CMS[0],), (IMAGE_CMS[1],), (IMAGE_CMS[0] + IMAGE_CMS[1],),
            (torch.tensor([[5, 1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0], [3, 0, 1, 9]]),)]


@function("06.mean_iu", _miu_cases,
          hint="IU of class i = n_ii / (t_i + Σ_j n_ji − n_ii); a class with no pixel in the truth and none "
               "predicted has 0/0 and is left out of the mean (the reference's nanmean); a class predicted "
               "but absent from the truth has IU 0 and counts. Return a plain float.")
def _mean_iu(cm):
    return metrics.scores(cm)["mean_iu"]
