"""Exercises of notebook 04: the skip nets' geometry and surgery (§4.2, Fig. 3).

Each expected answer is read off fcnlib's models (built without weights, on the meta device); each
reference solution works it out by hand with the layer arithmetic.
"""
import functools

import torch

from .. import classifiers, models
from ..exercises import expected, register


@functools.lru_cache(maxsize=None)
def _net(variant: str):
    with torch.device("meta"):
        return getattr(models, "fcn" + variant)()


# 04.score_cells: how many cells does FCN-32s's coarse score map have for a 500×500 image?
@expected("04.score_cells", hint="conv1 pads by 100 (700 px); each of the five 2×2 poolings halves the side, "
                                 "rounding up (ceil mode); fc6 is 7×7 without padding. Answer the side, an int.")
def _score_cells():
    net = _net("32s")
    with torch.no_grad():
        return net.maps(torch.zeros(1, 3, 500, 500, device="meta"))["score_fr"].shape[-1]


@register("04.score_cells")
def _score_cells_by_hand():
    n = 500 + 2 * 100 - 3 + 1       # conv1_1 (3×3, padding 100): 698; the other 3×3 convs keep the size
    for _ in range(5):              # a 2×2/2 pooling in ceil mode: ceil((n − 2) / 2) + 1 = ceil(n / 2)
        n = -(-n // 2)              # 349, 175, 88, 44, 22
    return n - 7 + 1                # fc6: 7×7, no padding → 16


# 04.pool4_crop: the offset at which FCN-16s crops score_pool4 to add it to upscore2
@expected("04.pool4_crop", hint="write both maps' coordinate maps (input coordinate = stride · unit + centre) "
                                "and ask which pool4 unit sits where upscore2's unit 0 sits. An int.")
def _pool4_crop():
    return _net("16s").crop_offsets()["pool4"]


@register("04.pool4_crop")
def _pool4_crop_by_hand():
    c = -99.0                          # conv1_1 with padding 100: output 0 is centred on input −99
    stride = 1
    for _ in range(4):                 # two 3×3 convs (centres unchanged) then a 2×2 pool: + (2 − 1)/2 · stride
        c += 0.5 * stride
        stride *= 2
    pool4 = c                          # stride 16
    c += 0.5 * stride                  # pool5, stride 32
    stride *= 2
    c += 3 * stride                    # fc6 7×7: centre moves by (7 − 1)/2 cells
    up2 = c + stride * (0 - 1.5) / 2   # upscore2 (kernel 4, stride 2): unit 0 at (0 − 3/2)/2 coarse cells
    return int((up2 - pool4) / 16)


# 04.equivalent_pad: conv1 padding for a net whose fc6 is 2×2 instead of 7×7
@expected("04.equivalent_pad", hint="a k×k fc6 centres its cell (k − 1)/2 pool5 cells (32 px each) to the "
                                    "right of its first input; padding p moves everything p px left. An int.")
def _equivalent_pad():
    return models.equivalent_pad(classifiers.vgg16_standin(width=0.125, crop=64))


@register("04.equivalent_pad")
def _equivalent_pad_by_hand():
    return 100 - 32 * (7 - 1) // 2 + 32 * (2 - 1) // 2   # 100 − 96 + 16 = 20


# 04.lr_schedule: the paper's learning rates for the three stages of FCN-VGG16
@expected("04.lr_schedule", hint="§4.3: 1e-4 for FCN-VGG16; §4.2: each upgrade divides it by 100. "
                                 "Answer a list [lr_32s, lr_16s, lr_8s].", tol=1e-9)
def _lr_schedule():
    from .. import staged
    return staged.paper_learning_rates(1e-4)


@register("04.lr_schedule")
def _lr_schedule_by_hand():
    return [1e-4, 1e-6, 1e-8]
