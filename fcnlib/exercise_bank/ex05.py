"""Exercises of notebook 05: loss sampling, the cell a pixel belongs to, the break-even p (§3.4, §4.3)."""
from fractions import Fraction

import torch

from .. import paper, sampling
from ..exercises import expected, register

# The reference FCN-32s (conv1 padded by 100, 7×7 fc6): stride 32, cell k centred at 12.5 + 32·k px.
REFERENCE_GRID = sampling.CellGrid(32, Fraction(25, 2))
PIXEL = 100
TOY_LABELS = torch.tensor([[[0, 0, 0, 0, 1, 1]],
                           [[0, 0, 2, 2, 2, 255]],
                           [[0, 0, 0, 0, 0, 0]]])

@expected("05.images_per_batch", hint="the expected number of kept cells must stay that of 20 whole images: "
          "each image keeps a fraction p of its cells.")
def _images():
    return sampling.images_per_batch(20, 0.25)

@register("05.images_per_batch")
def _images_by_hand():
    return int(20 / 0.25)

@expected("05.cell_of_pixel", hint="the pixel belongs to the cell whose centre 12.5 + 32·k is nearest: "
          "solve for k and round.")
def _cell():
    return REFERENCE_GRID.cell_of(PIXEL)

@register("05.cell_of_pixel")
def _cell_by_hand():
    centres = [12.5 + 32 * k for k in range(10)]
    return min(range(10), key=lambda k: abs(PIXEL - centres[k]))

@expected("05.break_even_p", hint="per kept loss term, whole-image training with sampling costs "
          "(forward + backward of the 500×500 image) / (p · 100 cells); a patch costs forward + backward "
          "of one 227×227 crop. Set them equal and solve for p.", tol=1e-3)
def _break_even():
    t = paper.timing()
    return sampling.break_even_p(t["forward_dense_ms"] + t["backward_dense_ms"],
                                 t["forward_single_ms"] + t["backward_single_ms"], 100)

@register("05.break_even_p")
def _break_even_by_hand():
    t = paper.timing()
    ps = [i / 10_000 for i in range(1, 10_001)]
    dense = t["forward_dense_ms"] + t["backward_dense_ms"]
    patch = t["forward_single_ms"] + t["backward_single_ms"]
    return next(p for p in ps if dense / (p * 100) <= patch)  # the smallest p where sampling wins

@expected("05.median_freq_background", hint="freq(c) = pixels of c / pixels of the images that contain c "
          "(void excluded); the weight is median(freq) / freq(c), the median over the classes present.")
def _median():
    return sampling.median_frequency_weights(TOY_LABELS, 3)[0].item()

@register("05.median_freq_background")
def _median_by_hand():
    # background: 4 + 2 + 6 = 12 px in images of 6 + 5 + 6 = 17 px; class 1: 2 of 6; class 2: 3 of 5
    freq = sorted([12 / 17, 2 / 6, 3 / 5])
    return freq[1] / (12 / 17)

