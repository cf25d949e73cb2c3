"""Exercises of notebook 03: shift-and-stitch, filter rarefaction, bilinear deconvolution (§3.2, §3.3).

Each expected answer is computed by running fcnlib's code; each reference solution works it out by hand.
"""
import torch
import torch.nn.functional as F

from .. import stitch, upsample
from ..exercises import expected, function

# 03.interlace: where does coarse cell (k, l) of shift (dy, dx) land in the stitched map?
INTERLACE = {"f": 4, "shift": (3, 1), "cell": (2, 5)}


@expected("03.interlace", hint="shift (dy, dx) fills the rows ≡ dy and the columns ≡ dx (mod f); "
                               "cell k of that shift is the k-th of them. Answer a tuple (row, col).")
def _interlace():
    f, (dy, dx), (k, l) = INTERLACE["f"], INTERLACE["shift"], INTERLACE["cell"]
    dense = stitch.shift_and_stitch(stitch.ShiftTagger(f), torch.zeros(1, 1, 8 * f, 8 * f), f)  # (1, 3, 8f, 8f)
    want = torch.tensor([dy * f + dx, k, l], dtype=dense.dtype).view(3, 1, 1)
    rows, cols = torch.nonzero((dense[0] == want).all(0), as_tuple=True)
    return (int(rows[0]), int(cols[0]))


# 03.rarefied_filter: the last 3×3 convolution of the notebook's stride-8 net, rarefied
@expected("03.rarefied_filter", hint="three 2×2 poolings (stride 2 each) come before it; the enlarged "
                                     "filter has (k − 1)·s + 1 taps per side. Answer (dilation, side).")
def _rarefied_filter():
    dense = stitch.rarefy(stitch.strided_net())
    conv = dense.conv4
    side = stitch.rarefy_filter(conv.weight[:1, :1], conv.dilation[0]).shape[-1]
    return (conv.dilation[0], side)


# 03.border_rows: which rows of a deconvolution-upsampled map differ from F.interpolate?
BORDER = {"f": 8, "cells": 4}


@expected("03.border_rows", hint="interpolate repeats the edge beyond the outermost cell centres, the "
                                 "deconvolution fades to zero there: f // 2 rows at each end. "
                                 "Answer the sorted list of row indices.")
def _border_rows():
    f, n = BORDER["f"], BORDER["cells"]
    x = torch.rand(1, 1, n, n, dtype=torch.float64) + 0.5
    layer = upsample.upsample_layer(1, f).double()
    y = upsample.crop_like(layer(x), (n * f, n * f), upsample.interpolate_crop(f))
    ref = F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)
    middle = n * f // 2  # a column well inside
    return torch.nonzero((y - ref)[0, 0, :, middle].abs() > 1e-9).flatten().tolist()


# 03.bilinear_kernel: write the fixed bilinear upsampling filter (§3.3)
def _kernel_cases():
    return [(1,), (2,), (3,), (4,), (5,), (16,), (64,)]


@function("03.bilinear_kernel", _kernel_cases,
          hint="for size K: factor f = (K + 1) // 2, centre c = f − 1 if K is odd else f − 0.5; the 1-D "
               "taps are 1 − |i − c| / f for i = 0 … K − 1, and the filter is their outer product (K, K).")
def _bilinear_kernel(size):
    return upsample.bilinear_kernel(size, dtype=torch.float64)
