"""Convolutionalization: a classifier's fully connected layers are convolutions (Section 3.1, Fig. 2).

A fully connected layer over a C×k×k feature map computes ``y = W · flatten(x) + b`` with W of
shape (out, C·k·k). ``torch.flatten`` is C-major — index ``c·k·k + i·k + j`` — so
``W.view(out, C, k, k)`` is the weight of a k×k convolution that computes the same ``y`` at the one
position where the kernel fits a k×k map, and slides over any larger map: fc6 of AlexNet is a 6×6
convolution, of VGG16 a 7×7 one, fc7 and fc8 are 1×1 convolutions. The convolutionalized net takes
any input at least one receptive field large and returns a grid of class scores (N, K, h, w).

torchvision puts ``AdaptiveAvgPool2d((k, k))`` between the features and the classifier. At the
native input size (224 px) the feature map already is k×k and the pool is the identity; on another
size it averages the map down (or up) to k×k — torchvision's way of accepting any size, which throws
away exactly the spatial layout that dense prediction needs. ``convolutionalize`` drops it (the
convolution slides fc6 over the map instead), so at the native size the logits are unchanged.

What "every output cell is the classifier run on its patch" means, precisely (tested in
tests/test_convolutionalize.py): cell (i, j) sees the input window of side ``geometry.rf`` starting
at ``(jump·i + start, jump·j + start)`` (:class:`fcnlib.receptive_field.Geometry`); −``start`` is the
zero padding of all layers counted in input pixels. Without padding the cell equals the classifier on that window, exactly. With
padding (torchvision's convolutions pad), a cell whose window lies inside the image never sees a
padded zero and equals the *unpadded* classifier (:func:`strip_padding`) on its window; the classifier
run on a native-size crop pads every layer of that crop with zeros where the dense net sees the rest
of the image, so that comparison differs by a measurable amount (no padding in the input can mimic
padding of the inner feature maps: a padded pixel becomes ReLU(bias) after one layer, not zero).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from . import receptive_field as rf
from .receptive_field import Geometry, GeometryError


def linear_to_conv(linear: nn.Linear, in_channels: int, kernel_size: int) -> nn.Conv2d:
    """The k×k convolution computing ``linear`` on a C×k×k map (weights copied; flatten is C-major)."""
    C, k = in_channels, kernel_size
    if linear.in_features != C * k * k:
        raise ValueError(f"{linear} takes {linear.in_features} inputs, not C·k·k = {C}·{k}·{k} = {C * k * k}")
    conv = nn.Conv2d(C, linear.out_features, k, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(linear.out_features, C, k, k))  # (out, C·k·k) → (out, C, k, k)
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def fc6_shape(classifier: nn.Module) -> tuple[int, int]:
    """(channels C, grid side k) of the feature map fc6 reads, read from the model itself."""
    convs = [m for m in classifier.features.modules() if isinstance(m, nn.Conv2d)]
    fc6 = next(m for m in classifier.classifier.modules() if isinstance(m, nn.Linear))
    C = convs[-1].out_channels
    k = math.isqrt(fc6.in_features // C)
    if C * k * k != fc6.in_features:
        raise ValueError(f"fc6 takes {fc6.in_features} inputs: not C·k·k for the {C} channels of the features")
    pool = getattr(classifier, "avgpool", None)
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        if tuple(out) != (k, k):
            raise ValueError(f"avgpool gives {tuple(out)} but fc6 reads a {k}×{k} grid")
    elif pool is not None and not isinstance(pool, nn.Identity):
        raise ValueError(f"don't know how to convolutionalize avgpool {pool}")
    return C, k


class DenseNet(nn.Sequential):
    """A convolutionalized classifier: ``features``, then ``fc6``, ``relu6``, … as convolutions.

    ``geometry`` and ``min_size`` say which input window each output cell sees and how small an
    input may be (computed from the layers when asked, so they follow later surgery); a smaller input
    is a clear error instead of a pooling layer's shape complaint.
    """

    def __init__(self, layers: dict):
        super().__init__()
        for name, m in layers.items():
            self.add_module(name, m)

    @property
    def geometry(self) -> Geometry:
        return rf.geometry(self)

    @property
    def min_size(self) -> int:
        return rf.min_input_size(self)

    def grid(self, size) -> tuple[int, int]:
        """Output grid (h, w) for an input of ``size`` = H or (H, W) pixels."""
        H, W = (size, size) if isinstance(size, int) else size
        return rf.output_size(self, H), rf.output_size(self, W)

    def forward(self, x):
        H, W = x.shape[-2:]
        try:
            self.grid((H, W))
        except GeometryError:
            try:
                g = self.geometry
                field = f" (a field of {g.rf} px, of which up to {-g.start} px on each side may be zero padding)"
            except GeometryError:  # layers after the scores (an upsampling): the size alone is known
                field = ""
            raise ValueError(f"input {H}×{W} is smaller than one receptive field: this net needs at least "
                             f"{self.min_size}×{self.min_size} px{field}; pad or resize the image") from None
        return super().forward(x)  # (N, K, h, w)


def convolutionalize(classifier: nn.Module, decapitate: bool = False) -> DenseNet:
    """The classifier as a fully convolutional net (an nn.Sequential), same weights (copied).

    Children: ``features`` (a copy), then the classifier's layers renamed after the paper's AlexNet/
    VGG: ``fc6`` (k×k conv), ``relu6``, ``drop6``, ``fc7`` (1×1), ``relu7``, ``drop7``, ``fc8`` (1×1).
    A dropout is named after the layer whose output it drops (torchvision's AlexNet drops pool5's
    output before fc6: ``drop5``). The AdaptiveAvgPool2d is dropped (see the module docstring).
    ``decapitate=True`` discards the final classifier layer (``fc8``), as the paper does (Sec. 4.1).
    """
    C, k = fc6_shape(classifier)
    head = list(classifier.classifier.children())
    linears = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
    if decapitate:
        head = head[:linears[-1]]
    layers, n, in_ch = {"features": copy.deepcopy(classifier.features)}, 5, C
    for m in head:
        if isinstance(m, nn.Linear):
            n += 1
            layers[f"fc{n}"] = linear_to_conv(m, in_ch, k if n == 6 else 1)
            in_ch = m.out_features
        elif isinstance(m, (nn.ReLU, nn.Dropout)):
            layers[f"{'relu' if isinstance(m, nn.ReLU) else 'drop'}{n}"] = copy.deepcopy(m)
        else:
            raise ValueError(f"don't know how to convolutionalize classifier layer {m}")
    net = DenseNet(layers)
    return net.train(classifier.training)


def caffe_arithmetic(layers, pad: int = 0) -> None:
    """In place, on ``layers`` (modules in order, e.g. ``features.modules()``): the first convolution
    padded by ``pad`` and every max pooling rounding its output size up (``ceil_mode``), as Caffe's
    pooling always does: the AlexNet/VGG geometry of the paper and its reference implementation."""
    layers = list(layers)
    first = next(m for m in layers if isinstance(m, nn.Conv2d))
    first.padding = (pad, pad)
    for m in layers:
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = True


def strip_padding(net: nn.Module) -> nn.Module:
    """A copy with every convolution's and pooling's padding set to 0 (and pooling's ceil mode off).

    The unpadded twin: every output cell of its convolutionalized form equals it run on that cell's
    window, and its native input grows by −2·start (AlexNet: 223 → 355 px).
    """
    twin = copy.deepcopy(net)
    for m in twin.modules():
        if isinstance(m, rf.WINDOWS):
            m.padding = (0, 0) if isinstance(m, nn.Conv2d) else 0
            if hasattr(m, "ceil_mode"):
                m.ceil_mode = False
    return twin


def patches(x: torch.Tensor, size: int, stride: int, start: int = 0):
    """Every ``size``-px window at ``stride``, window i starting at ``start + stride·i`` (windows reaching
    outside the image are skipped): (N·h·w, C, size, size) and the grid (h, w) with its first cell
    index (i0, j0)."""
    H, W = x.shape[-2:]
    i0 = math.ceil(-start / stride)              # first window that starts inside the image
    top = i0 * stride + start
    h, w = (H - top - size) // stride + 1, (W - top - size) // stride + 1
    if h < 1 or w < 1:
        raise ValueError(f"a {H}×{W} input holds no {size}-px window at stride {stride}")
    x = x[..., top:top + (h - 1) * stride + size, top:top + (w - 1) * stride + size]
    p = x.unfold(2, size, stride).unfold(3, size, stride)             # (N, C, h, w, size, size)
    p = p.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1], size, size)  # (N·h·w, C, size, size)
    return p, (h, w), (i0, i0)


def sliding_window(classifier: nn.Module, x: torch.Tensor, size: int, stride: int, start: int = 0,
                   batch_size: int | None = None) -> torch.Tensor:
    """The naive alternative: the classifier on every window, ``batch_size`` windows at a time
    (None: all at once; 1: one by one). Returns scores (N, K, h, w) for the cells of :func:`patches`."""
    p, (h, w), _ = patches(x, size, stride, start)
    bs = batch_size or len(p)
    out = torch.cat([classifier(p[i:i + bs]) for i in range(0, len(p), bs)])  # (N·h·w, K)
    return out.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)              # (N, K, h, w)
