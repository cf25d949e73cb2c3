"""The instructor key of notebook 01's exercises: each value reached by a second route (by hand, as
a learner would), each function written as a learner would. Not part of the student edition."""
import torch
from torch import nn

from fcnlib.exercises import register


@register("01.fc6_weight")
def _fc6_weight_by_hand():
    out, C, k = 4096, 512, 7           # 512 · 7 · 7 = 25088 = fc6.in_features
    return (out, C, k, k)


@register("01.flatten_column")
def _flatten_column_by_hand():
    c, i, j, k = 3, 2, 5, 6
    return c * k * k + i * k + j


@register("01.grid")
def _grid_by_hand():
    def side(n):
        n = (n + 2 * 2 - 11) // 4 + 1   # conv1
        for _ in range(3):              # pool1, pool2, pool5 (conv2–conv5 pad to keep the size)
            n = (n - 3) // 2 + 1
        return n - 6 + 1                # fc6: a 6×6 convolution
    return (side(480), side(640))


@register("01.linear_to_conv")
def linear_to_conv(linear, in_channels, kernel_size):
    conv = nn.Conv2d(in_channels, linear.out_features, kernel_size)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, in_channels, kernel_size, kernel_size))
        conv.bias.copy_(linear.bias)
    return conv
