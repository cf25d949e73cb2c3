"""Exercises of notebook 00: the four metrics from a confusion matrix (Section 5)."""
import torch

from .. import metrics
from ..exercises import expected, function

# rows: ground truth, columns: prediction
EXERCISE_CM = torch.tensor([[50, 2, 3],
                            [4, 10, 1],
                            [6, 0, 24]])


@expected("00.mean_iu", hint="IU of class i = n_ii / (row sum + column sum − n_ii); average the three.")
def _mean_iu():
    return metrics.scores(EXERCISE_CM)["mean_iu"]


@expected("00.fw_iu", hint="weight each class's IU by its share of ground-truth pixels (its row sum / total).")
def _fw_iu():
    return metrics.scores(EXERCISE_CM)["fw_iu"]


# 00.confusion: write the confusion matrix, as the reference's fast_hist does
def _confusion_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, shape in ((3, (4, 5)), (5, (2, 8, 8)), (21, (300,))):
        label = torch.randint(0, n, shape, generator=g)
        label[torch.rand(shape, generator=g) < 0.1] = 255          # some void pixels
        cases.append((torch.randint(0, n, shape, generator=g), label, n))
    return cases


@function("00.confusion", _confusion_cases,
          hint="rows are the ground truth, columns the prediction; leave the void pixels (255) out. One "
               "torch.bincount of n · label + pred over the valid pixels, reshaped to (n, n), does it all.")
def _confusion(pred, label, n):
    return metrics.confusion(pred, label, n)
