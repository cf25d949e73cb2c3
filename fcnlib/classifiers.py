"""The course's stand-in classifiers: AlexNet- and VGG16-shaped nets small enough to train on a CPU.

The paper starts from ImageNet classifiers (Section 4.1). Offline, the course pretrains small copies of
the same architectures on the embedded object crops (``fcnlib.data.ObjectCrops``) instead. They are
built with torchvision's own model code — ``torchvision.models.VGG`` with ``vgg.make_layers`` and
``torchvision.models.AlexNet`` — with every channel count scaled by ``width`` and the classifier's
fully connected sizes scaled too. The layer structure (13 or 5 convolutions, their kernels, strides,
paddings and poolings; fc6, fc7, fc8 with ReLU and dropout) is exactly torchvision's.

One change: torchvision puts an ``AdaptiveAvgPool2d`` before the classifier, an identity at the native
224×224 input. A stand-in is trained at its own ``crop`` size, where the feature map is exactly the
fc6 grid (``crop // 32`` for VGG), so the pool is replaced by ``nn.Identity`` and fc6 sees that grid.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import AlexNet, VGG
from torchvision.models.vgg import cfgs, make_layers

from . import receptive_field as rf
from .data import NUM_CLASSES


def _scale(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def vgg16_standin(width: float = 0.125, num_classes: int = NUM_CLASSES, crop: int = 64,
                  fc: int | None = None, dropout: float = 0.5) -> VGG:
    """VGG16 (configuration "D") with channels × ``width``, for ``crop``×``crop`` inputs.

    fc6 becomes a Linear over the (crop // 32)² grid of the last pooling; fc6/fc7 have ``fc`` units
    (default 4096 × width).
    """
    if crop % 32:
        raise ValueError(f"crop must be a multiple of VGG16's stride 32, got {crop}")
    cfg = [v if v == "M" else _scale(v, width) for v in cfgs["D"]]
    features = make_layers(cfg, batch_norm=False)
    model = VGG(features, num_classes=num_classes, init_weights=True, dropout=dropout)
    c, k = cfg[-2], crop // 32
    fc = fc or _scale(4096, width)
    model.avgpool = nn.Identity()
    model.classifier = nn.Sequential(
        nn.Linear(c * k * k, fc), nn.ReLU(True), nn.Dropout(dropout),
        nn.Linear(fc, fc), nn.ReLU(True), nn.Dropout(dropout),
        nn.Linear(fc, num_classes))
    for m in model.classifier:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    model.crop = crop
    return model


def alexnet_standin(width: float = 0.25, num_classes: int = NUM_CLASSES, crop: int = 127,
                    fc: int | None = None, dropout: float = 0.5) -> AlexNet:
    """torchvision's AlexNet with channels × ``width``, for ``crop``×``crop`` inputs.

    The feature map of a crop is ``grid(crop)`` on a side (6 for 224); fc6 becomes a Linear over it.
    """
    model = AlexNet(num_classes=num_classes, dropout=dropout)
    feats = []
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            cin = 3 if m.in_channels == 3 else _scale(m.in_channels, width)
            m = nn.Conv2d(cin, _scale(m.out_channels, width), m.kernel_size, m.stride, m.padding)
        feats.append(m)
    model.features = nn.Sequential(*feats)
    k = alexnet_grid(crop)
    if k < 1:
        raise ValueError(f"crop {crop} is smaller than AlexNet's receptive field")
    c = _scale(256, width)
    fc = fc or _scale(4096, width)
    model.avgpool = nn.Identity()
    model.classifier = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(c * k * k, fc), nn.ReLU(True),
        nn.Dropout(dropout), nn.Linear(fc, fc), nn.ReLU(True),
        nn.Linear(fc, num_classes))
    model.crop = crop
    return model


def alexnet_grid(size: int) -> int:
    """Side of torchvision AlexNet's last feature map for a ``size``×``size`` input (0: too small), read
    by the course's one geometry from the layers themselves (built on the meta device: no weights)."""
    with torch.device("meta"):
        features = AlexNet().features
    try:
        return rf.output_size(features, size)
    except rf.GeometryError:
        return 0


BUILDERS = {"vgg16": vgg16_standin, "alexnet": alexnet_standin}


def build(arch: str, **kw) -> nn.Module:
    if arch not in BUILDERS:
        raise ValueError(f"unknown stand-in architecture {arch!r}: use one of {', '.join(BUILDERS)}")
    return BUILDERS[arch](**kw)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = sum((model(X[i:i + batch_size].to(device)).argmax(1).cpu() == Y[i:i + batch_size]).sum().item()
                  for i in range(0, len(X), batch_size))
    return correct / len(X)
