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


@register("00.mean_iu")
def _mean_iu_by_hand():
    n = EXERCISE_CM.tolist()
    ius = []
    for i in range(3):
        row, col = sum(n[i]), sum(n[j][i] for j in range(3))
        ius.append(n[i][i] / (row + col - n[i][i]))
    return sum(ius) / 3


@expected("00.fw_iu", hint="weight each class's IU by its share of ground-truth pixels (its row sum / total).")
def _fw_iu():
    return metrics.scores(EXERCISE_CM)["fw_iu"]


@register("00.fw_iu")
def _fw_iu_by_hand():
    n = EXERCISE_CM.tolist()
    total = sum(map(sum, n))
    out = 0.0
    for i in range(3):
        row, col = sum(n[i]), sum(n[j][i] for j in range(3))
        out += row / total * n[i][i] / (row + col - n[i][i])
    return out
