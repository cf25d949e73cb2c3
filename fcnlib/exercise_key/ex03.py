"""The instructor key of notebook 03's exercises: each value reached by a second route (by hand, as
a learner would), each function written as a learner would. Not part of the student edition."""
from fcnlib.exercise_bank.ex03 import BORDER, INTERLACE
import torch

from fcnlib.exercises import register


@register("03.interlace")
def _interlace_by_hand():
    f, (dy, dx), (k, l) = INTERLACE["f"], INTERLACE["shift"], INTERLACE["cell"]
    return (k * f + dy, l * f + dx)


@register("03.rarefied_filter")
def _rarefied_filter_by_hand():
    s = 2 * 2 * 2
    return (s, (3 - 1) * s + 1)


@register("03.border_rows")
def _border_rows_by_hand():
    f, n = BORDER["f"], BORDER["cells"]
    # output p sits at (p + 1/2)/f − 1/2 in cell units: outside [0, n − 1] for p < f/2 − 1/2 or
    # p > n·f − f/2 − 1/2
    return [p for p in range(n * f) if (p + 0.5) / f - 0.5 < 0 or (p + 0.5) / f - 0.5 > n - 1]


@register("03.bilinear_kernel")
def bilinear_kernel(size):
    f = (size + 1) // 2
    c = f - 1 if size % 2 == 1 else f - 0.5
    taps = [1 - abs(i - c) / f for i in range(size)]
    return torch.tensor([[a * b for b in taps] for a in taps])
