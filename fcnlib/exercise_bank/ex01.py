"""Exercises of notebook 01: fully connected layers as convolutions (Section 3.1)."""
import torch
import torchvision
from torch import nn

from .. import convolutionalize as cv
from ..exercises import expected, function


def _meta(build):
    with torch.device("meta"):          # shapes only: no memory, no random init
        return build()


@expected("01.fc6_weight", hint="fc6 of VGG16 reads pool5, 512 channels on a 7×7 grid, and has 4096 outputs; "
          "a convolution's weight is (out_channels, in_channels, kernel_h, kernel_w). Give a tuple.")
def _fc6_weight():
    return tuple(cv.convolutionalize(_meta(torchvision.models.vgg16)).fc6.weight.shape)


@expected("01.flatten_column", hint="torch.flatten of a (C, 6, 6) map is C-major: the index of (c, i, j) "
          "is c·6·6 + i·6 + j.")
def _flatten_column():
    lin = _meta(lambda: nn.Linear(256 * 6 * 6, 1)).to_empty(device="cpu")
    with torch.no_grad():
        lin.weight.copy_(torch.arange(256 * 36, dtype=torch.float32)[None])  # each weight = its column
    return int(cv.linear_to_conv(lin, 256, 6).weight[0, 3, 2, 5])


@expected("01.grid", hint="apply ⌊(n + 2p − k)/s⌋ + 1 layer by layer to each side (conv1 11/4 pad 2, three "
          "3/2 max-pools, the other convolutions keep the size), then fc6, a 6×6 convolution: side − 5. "
          "Give (rows, columns).")
def _grid():
    return cv.convolutionalize(_meta(torchvision.models.alexnet)).grid((480, 640))


# 01.linear_to_conv: write the convolution that computes a fully connected layer (§3.1)
def _linear_cases():
    torch.manual_seed(0)
    return [(nn.Linear(C * k * k, out), C, k) for C, k, out in ((2, 3, 5), (4, 1, 3), (3, 6, 7))]


def _apply_dense(conv, linear, C, k):
    """What the convolution computes on a map 2 cells wider than the fully connected layer's input."""
    x = torch.randn(2, C, k + 2, k + 2, generator=torch.Generator().manual_seed(C * k))  # (2, C, k+2, k+2)
    with torch.no_grad():
        return conv(x)                                                                    # (2, out, 3, 3)


@function("01.linear_to_conv", _linear_cases, apply=_apply_dense,
          hint="an nn.Conv2d(C, out, k) whose weight is the linear weight viewed as (out, C, k, k) — "
               "torch.flatten of a (C, k, k) map is C-major — and the same bias.")
def _linear_to_conv(linear, C, k):
    return cv.linear_to_conv(linear, C, k)
