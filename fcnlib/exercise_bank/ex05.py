"""Exercises of notebook 05: loss sampling, the cell a pixel belongs to, the break-even p (§3.4, §4.3)."""
from fractions import Fraction

import torch

from .. import paper, sampling
from ..exercises import expected, function

# The reference FCN-32s (conv1 padded by 100, 7×7 fc6): stride 32, cell k centred at 12.5 + 32·k px.
REFERENCE_GRID = sampling.CellGrid(rf=1, jump=32, centre=Fraction(25, 2))
PIXEL = 100
TOY_LABELS = torch.tensor([[[0, 0, 0, 0, 1, 1]],
                           [[0, 0, 2, 2, 2, 255]],
                           [[0, 0, 0, 0, 0, 0]]])

@expected("05.images_per_batch", hint="the expected number of kept cells must stay that of 20 whole images: "
          "each image keeps a fraction p of its cells.")
def _images():
    return sampling.images_per_batch(20, 0.25)


@expected("05.cell_of_pixel", hint="the pixel belongs to the cell whose centre 12.5 + 32·k is nearest: "
          "solve for k and round.")
def _cell():
    return REFERENCE_GRID.cell_of(PIXEL)


@expected("05.break_even_p", hint="per kept loss term, whole-image training with sampling costs "
          "(forward + backward of the 500×500 image) / (p · 100 cells); a patch costs forward + backward "
          "of one 227×227 crop. Set them equal and solve for p.", tol=1e-3)
def _break_even():
    t = paper.timing()
    return sampling.break_even_p(t["forward_dense_ms"] + t["backward_dense_ms"],
                                 t["forward_single_ms"] + t["backward_single_ms"], 100)


@expected("05.median_freq_background", hint="freq(c) = pixels of c / pixels of the images that contain c "
          "(void excluded); the weight is median(freq) / freq(c), the median over the classes present.")
def _median():
    return sampling.median_frequency_weights(TOY_LABELS, 3)[0].item()


# 05.sampled_loss: write the loss over the kept pixels only (§3.4)
def _loss_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, c, h, w in ((1, 3, 4, 4), (2, 5, 8, 6), (4, 21, 16, 16)):
        target = torch.randint(0, c, (n, h, w), generator=g)
        target[torch.rand(n, h, w, generator=g) < 0.2] = 255                 # void pixels
        keep = torch.rand(n, h, w, generator=g) < 0.5
        keep[0, 0, 0] = True
        target[0, 0, 0] = 0                                                  # at least one term
        cases.append((torch.randn(n, c, h, w, generator=g), target, keep))
    return cases


@function("05.sampled_loss", _loss_cases,
          hint="the per-pixel cross-entropy (reduction='none', void ignored) averaged over the pixels that "
               "are kept *and* not void — dropping a pixel must act exactly like making it void.")
def _sampled_loss(logits, target, keep):
    return sampling.sampled_loss(logits, target, keep)
