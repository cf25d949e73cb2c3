"""Exercises of notebook 01: fully connected layers as convolutions (Section 3.1)."""
import torch
import torchvision
from torch import nn

from .. import convolutionalize as cv
from ..exercises import expected, register


def _meta(build):
    with torch.device("meta"):          # shapes only: no memory, no random init
        return build()


@expected("01.fc6_weight", hint="fc6 of VGG16 reads pool5, 512 channels on a 7×7 grid, and has 4096 outputs; "
          "a convolution's weight is (out_channels, in_channels, kernel_h, kernel_w). Give a tuple.")
def _fc6_weight():
    return tuple(cv.convolutionalize(_meta(torchvision.models.vgg16)).fc6.weight.shape)


@register("01.fc6_weight")
def _fc6_weight_by_hand():
    out, C, k = 4096, 512, 7           # 512 · 7 · 7 = 25088 = fc6.in_features
    return (out, C, k, k)


@expected("01.flatten_column", hint="torch.flatten of a (C, 6, 6) map is C-major: the index of (c, i, j) "
          "is c·6·6 + i·6 + j.")
def _flatten_column():
    lin = _meta(lambda: nn.Linear(256 * 6 * 6, 1)).to_empty(device="cpu")
    with torch.no_grad():
        lin.weight.copy_(torch.arange(256 * 36, dtype=torch.float32)[None])  # each weight = its column
    return int(cv.linear_to_conv(lin, 256, 6).weight[0, 3, 2, 5])


@register("01.flatten_column")
def _flatten_column_by_hand():
    c, i, j, k = 3, 2, 5, 6
    return c * k * k + i * k + j


@expected("01.grid", hint="apply ⌊(n + 2p − k)/s⌋ + 1 layer by layer to each side (conv1 11/4 pad 2, three "
          "3/2 max-pools, the other convolutions keep the size), then fc6, a 6×6 convolution: side − 5. "
          "Give (rows, columns).")
def _grid():
    return cv.convolutionalize(_meta(torchvision.models.alexnet)).grid((480, 640))


@register("01.grid")
def _grid_by_hand():
    def side(n):
        n = (n + 2 * 2 - 11) // 4 + 1   # conv1
        for _ in range(3):              # pool1, pool2, pool5 (conv2–conv5 pad to keep the size)
            n = (n - 3) // 2 + 1
        return n - 6 + 1                # fc6: a 6×6 convolution
    return (side(480), side(640))
