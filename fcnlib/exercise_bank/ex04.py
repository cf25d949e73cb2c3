"""Exercises of notebook 04: the skip nets' geometry and surgery (§4.2, Fig. 3).

Each expected answer is read off fcnlib's models (built without weights, on the meta device); each
reference solution works it out by hand with the layer arithmetic.
"""
import functools

import torch

from .. import classifiers, transplant, upsample
from ..exercises import expected, function


@functools.lru_cache(maxsize=None)
def _net(variant: str):
    with torch.device("meta"):
        return getattr(transplant, "fcn" + variant)()


# 04.score_cells: how many cells does FCN-32s's coarse score map have for a 500×500 image?
@expected("04.score_cells", hint="conv1 pads by 100 (700 px); each of the five 2×2 poolings halves the side, "
                                 "rounding up (ceil mode); fc6 is 7×7 without padding. Answer the side, an int.")
def _score_cells():
    net = _net("32s")
    with torch.no_grad():
        return net.maps(torch.zeros(1, 3, 500, 500, device="meta"))["score_fr"].shape[-1]


# 04.pool4_crop: the offset at which FCN-16s crops score_pool4 to add it to upscore2
@expected("04.pool4_crop", hint="write both maps' coordinate maps (input coordinate = stride · unit + centre) "
                                "and ask which pool4 unit sits where upscore2's unit 0 sits. An int.")
def _pool4_crop():
    return _net("16s").crop_offsets()["pool4"]


# 04.equivalent_pad: conv1 padding for a net whose fc6 is 2×2 instead of 7×7
@expected("04.equivalent_pad", hint="a k×k fc6 centres its cell (k − 1)/2 pool5 cells (32 px each) to the "
                                    "right of its first input; padding p moves everything p px left. An int.")
def _equivalent_pad():
    return transplant.equivalent_pad(classifiers.vgg16_standin(width=0.125, crop=64))


# 04.lr_schedule: the paper's learning rates for the three stages of FCN-VGG16
@expected("04.lr_schedule", hint="§4.3: 1e-4 for FCN-VGG16; §4.2: each upgrade divides it by 100. "
                                 "Answer a list [lr_32s, lr_16s, lr_8s].", tol=1e-9)
def _lr_schedule():
    from .. import staged
    return staged.paper_learning_rates(1e-4)


# 04.fuse: write the skip's crop-and-sum (Fig. 3)
def _fuse_cases():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(1, 3, 6, 6, generator=g), torch.randn(1, 3, 11, 11, generator=g), 5),
            (torch.randn(2, 21, 10, 14, generator=g), torch.randn(2, 21, 28, 34, generator=g), 9),
            (torch.randn(1, 2, 4, 4, generator=g), torch.randn(1, 2, 4, 4, generator=g), 0)]


@function("04.fuse", _fuse_cases,
          hint="crop the skip's scores to the upsampled map's height and width, starting `offset` rows "
               "and columns in (the crop offset derived from the coordinate maps), then add.")
def _fuse(upsampled, skip_scores, offset):
    return upsampled + upsample.crop_like(skip_scores, upsampled.shape[-2:], offset)
