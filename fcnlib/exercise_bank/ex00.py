"""Exercises of notebook 00: the four metrics from a confusion matrix (Section 5)."""
import torch

from .. import metrics
from ..exercises import expected, register

# rows: ground truth, columns: prediction
EXERCISE_CM = torch.tensor([[50, 2, 3],
                            [4, 10, 1],
                            [6, 0, 24]])


@expected("00.mean_iu", hint="IU of class i = n_ii / (row sum + column sum − n_ii); average the three.")
def _mean_iu():
    return metrics.scores(EXERCISE_CM)["mean_iu"]


def _by_hand():
    """Per class: (pixels in the ground truth, IU), with plain Python loops."""
    n = EXERCISE_CM.tolist()
    out = []
    for i in range(3):
        row, col = sum(n[i]), sum(n[j][i] for j in range(3))
        out.append((row, n[i][i] / (row + col - n[i][i])))
    return out


@register("00.mean_iu")
def _mean_iu_by_hand():
    return sum(iu for _, iu in _by_hand()) / 3


@expected("00.fw_iu", hint="weight each class's IU by its share of ground-truth pixels (its row sum / total).")
def _fw_iu():
    return metrics.scores(EXERCISE_CM)["fw_iu"]


@register("00.fw_iu")
def _fw_iu_by_hand():
    classes = _by_hand()
    total = sum(t for t, _ in classes)
    return sum(t / total * iu for t, iu in classes)
