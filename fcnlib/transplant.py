"""Classifiers become FCNs (§4.1): decapitate, convolutionalize fc6/fc7, cut the backbone at strides
8, 16 and 32, and hand the parts to :class:`fcnlib.models.FCN` with zero-initialized scores.

Public API (every builder returns an :class:`~fcnlib.models.FCN`, in train mode; ``pad`` is conv1's padding)::

    fcn32s(num_classes=21, width=1.0, weights=None, pad=100)    # VGG16 (channels × width, fc6 7×7);
    fcn16s(...), fcn8s(...)                                     #   weights="imagenet": torchvision's, read
                                                                #   from the local torch hub cache (width 1)
    fcn_alexnet(num_classes=21, width=1.0, weights=None, pad=100)
    fcn_googlenet(num_classes=21, weights=None, pad=100)        # torchvision's GoogLeNet (see its docstring)
    fcn_from_classifier(classifier, variant="32s", num_classes=21, pad=100, source=None, fc6_padding=0)
    vgg16_classifier(width=1.0, weights=None)                   # the classifier those builders transplant
    standin_fcn(variant="32s", device="cpu", pad="equivalent", num_classes=None)  # the course's stand-in VGG16
    equivalent_pad(classifier) -> int                           # conv1 padding putting its grid on the reference's
    check_transplanted(model, probe=True, error=True) -> dict   # "why are all outputs zero?"
    table1_nets(googlenet="caffe") -> dict                      # Table 1's three nets, geometry only (meta)
    caffe_googlenet(g) -> g                                     # torchvision's GoogLeNet in the paper's geometry

Staged surgery (FCN-32s → 16s → 8s) is :mod:`fcnlib.surgery`.
"""
from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from . import receptive_field as rf
from .convolutionalize import caffe_arithmetic, convolutionalize
from .models import FCN, REFERENCE_PAD
from .surgery import freeze_backbone

# torchvision's GoogLeNet modules from the input to inception5b: its convolutional trunk
GOOGLENET_TRUNK = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                   "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                   "inception5a", "inception5b")
TORCHVISION_WEIGHTS = {"vgg16": "vgg16-397923af.pth", "alexnet": "alexnet-owt-7be5be79.pth",
                       "googlenet": "googlenet-1378be20.pth"}


class NotTransplantedError(RuntimeError):
    """An FCN whose backbone holds no classifier weights (see :func:`check_transplanted`)."""



def _split_at_strides(features: nn.Sequential, pad: int):
    """Copy of ``features`` with conv1 padded by ``pad`` and ceil-mode pooling, cut into the layers
    up to stride 8 (pool3 in VGG16, pool1 in AlexNet), up to 16, and the rest."""
    layers = [copy.deepcopy(m) for m in features]
    caffe_arithmetic(layers, pad)       # Caffe's pooling rounds up: every input size gives an output
    cuts, stride = [], 1
    for i, m in enumerate(layers):
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            stride *= s
            if s > 1 and stride in (8, 16):
                cuts.append(i + 1)
    if len(cuts) != 2 or stride != 32:
        raise ValueError(f"expected a backbone reaching strides 8, 16 and 32, got total stride {stride}")
    return (nn.Sequential(*layers[:cuts[0]]), nn.Sequential(*layers[cuts[0]:cuts[1]]),
            nn.Sequential(*layers[cuts[1]:]))


def fcn_from_classifier(classifier: nn.Module, variant: str = "32s", num_classes: int = 21,
                        pad: int = REFERENCE_PAD, source: str | None = None, fc6_padding: int = 0) -> FCN:
    """Transplant a classifier into an FCN (§4.1): decapitate it, convolutionalize fc6/fc7
    (:func:`fcnlib.convolutionalize.convolutionalize`: fc6 becomes a k×k convolution over the grid
    it read), pad conv1 by ``pad`` and pool in ceil mode, and add zero-initialized score layers and
    bilinear upsampling. ``variant`` "32s-fixed" is "32s" with :func:`freeze_backbone`.

    The weights are copied: the FCN and the classifier share no tensors. ``source`` names where the
    weights came from (recorded; ``""`` marks a random classifier, which :func:`check_transplanted`
    then reports). ``fc6_padding`` pads fc6 (0 in the paper; ``pad=1, fc6_padding=3`` is the
    "same"-padded net that :mod:`benchmarks.bench_fcn` compares the paper's padding of 100 with).
    """
    fixed = variant == "32s-fixed"
    variant = "32s" if fixed else variant
    dense = convolutionalize(classifier, decapitate=True)
    to_pool3, to_pool4, to_pool5 = _split_at_strides(dense.features, pad)
    fc = nn.Sequential(OrderedDict((n, m) for n, m in dense.named_children() if n != "features"))
    fc.fc6.padding = (fc6_padding, fc6_padding)
    n_conv = sum(isinstance(m, nn.Conv2d) for m in dense.features.modules())
    arch = {13: "vgg16", 5: "alexnet"}.get(n_conv, f"{type(classifier).__name__.lower()}-{n_conv}conv")
    if source is None:  # a classifier handed in is taken to be trained ("" marks a random one)
        source = getattr(classifier, "source", None) or f"{type(classifier).__name__} classifier"
    model = FCN(to_pool3, to_pool4, to_pool5, fc, num_classes, variant, arch, source=source)
    model.train(classifier.training)
    return freeze_backbone(model) if fixed else model


def _torchvision_classifier(arch: str, weights):
    import torchvision
    ctor = getattr(torchvision.models, arch)
    kw = {"aux_logits": False, "init_weights": True} if arch == "googlenet" else {}
    model = ctor(weights=None, **kw)
    if weights is None:
        return model, ""
    if weights != "imagenet":
        raise ValueError(f"weights must be None or 'imagenet', got {weights!r}")
    from . import tiers
    path = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_WEIGHTS[arch]
    tiers.require({f"torchvision {arch} ImageNet weights": path},
                  how=f"Put torchvision's {TORCHVISION_WEIGHTS[arch]} into {path.parent} (e.g. copy it from a "
                      f"machine where torchvision.models.{arch}(weights='DEFAULT') has run).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if arch != "googlenet" and (missing or unexpected):
        raise RuntimeError(f"{path} does not fit torchvision's {arch}: missing {missing}, unexpected {unexpected}")
    return model, f"torchvision {arch} ImageNet ({path.name})"


def _vgg16(width: float, weights):
    if weights is not None and width != 1.0:
        raise ValueError("ImageNet weights exist for full width only: use width=1.0 with weights='imagenet'")
    if width == 1.0:
        return _torchvision_classifier("vgg16", weights)
    from .classifiers import vgg16_standin
    return vgg16_standin(width=width, num_classes=1000, crop=224), ""


def vgg16_classifier(width: float = 1.0, weights=None) -> nn.Module:
    """The classifier the VGG16 builders transplant: torchvision's VGG16 (``weights="imagenet"``:
    from the local torch hub cache, never downloaded) or, for ``width`` < 1, the same layers with
    channels × width (fc6 7×7). Its ``source`` attribute says where its weights came from ("" if
    random)."""
    classifier, source = _vgg16(width, weights)
    classifier.source = source
    return classifier


def fcn32s(num_classes: int = 21, width: float = 1.0, weights=None, pad: int = REFERENCE_PAD) -> FCN:
    """FCN-32s on VGG16 (channels × ``width``; fc6 7×7). ``weights``: None (random backbone — not
    transplanted, see :func:`check_transplanted`) or "imagenet" (torchvision's weights, read from the
    local torch hub cache, never downloaded)."""
    classifier, source = _vgg16(width, weights)
    return fcn_from_classifier(classifier, "32s", num_classes, pad, source=source)


def fcn16s(num_classes: int = 21, width: float = 1.0, weights=None, pad: int = REFERENCE_PAD) -> FCN:
    """FCN-16s built directly (for training it, prefer ``fcn16s_from(trained_fcn32s)``, §4.2)."""
    classifier, source = _vgg16(width, weights)
    return fcn_from_classifier(classifier, "16s", num_classes, pad, source=source)


def fcn8s(num_classes: int = 21, width: float = 1.0, weights=None, pad: int = REFERENCE_PAD) -> FCN:
    """FCN-8s built directly (for training it, prefer ``fcn8s_from(trained_fcn16s)``, §4.2)."""
    classifier, source = _vgg16(width, weights)
    return fcn_from_classifier(classifier, "8s", num_classes, pad, source=source)


def fcn_alexnet(num_classes: int = 21, width: float = 1.0, weights=None, pad: int = REFERENCE_PAD) -> FCN:
    """FCN-AlexNet (Table 1): torchvision's AlexNet (channels × ``width``), fc6 6×6, stride 32.
    Its skips would tap pool1 (stride 8) and pool2 (16); the paper makes skip nets on VGG16 only."""
    if width == 1.0:
        classifier, source = _torchvision_classifier("alexnet", weights)
    else:
        if weights is not None:
            raise ValueError("ImageNet weights exist for full width only")
        from .classifiers import alexnet_standin
        classifier, source = alexnet_standin(width=width, num_classes=1000, crop=224), ""
    return fcn_from_classifier(classifier, "32s", num_classes, pad, source=source)


def fcn_googlenet(num_classes: int = 21, weights=None, pad: int = REFERENCE_PAD) -> FCN:
    """FCN-GoogLeNet (Table 1) from torchvision's GoogLeNet: conv1 … inception5b, dropout, score layer
    (the paper keeps only the final loss layer and discards the final average pooling, §4.1).

    torchvision's GoogLeNet is not the paper's: batch norm after every convolution, 3×3 convolutions
    in the "5×5" branch and a 2×2 pool4 (receptive field 571, not 907; tests/test_receptive_field.py).
    Its ``transform_input`` is not applied (feed ImageNet-normalized images). Full width only; no
    fc layers (``fc`` is the dropout). Skips tap inception3b (stride 8) and inception4e (stride 16).
    """
    g, source = _torchvision_classifier("googlenet", weights)
    g.conv1.conv.padding = (pad, pad)
    names = GOOGLENET_TRUNK
    for n in names:
        if isinstance(getattr(g, n), nn.MaxPool2d):
            getattr(g, n).ceil_mode = True
    seq = lambda ns: nn.Sequential(OrderedDict((n, getattr(g, n)) for n in ns))  # noqa: E731
    # cut after the layers reaching strides 8 (maxpool2 … inception3b) and 16 (maxpool3 … inception4e)
    return FCN(seq(names[:7]), seq(names[7:13]), seq(names[13:]), nn.Sequential(nn.Dropout(0.4)),
               num_classes, "32s", "googlenet", source, channels=(480, 832, 1024, 1024))


def caffe_googlenet(g: nn.Module) -> nn.Module:
    """In place: torchvision's GoogLeNet given the original (Caffe) geometry, which torchvision's
    differs from: 5×5 convolutions in the "5×5" inception branch (torchvision's are 3×3), a 3×3
    ceil-mode pool4 (2×2), and the 7×7 average pool ``pool5/7x7_s1`` (adaptive)."""
    from torchvision.models.googlenet import Inception
    for m in g.modules():
        if isinstance(m, Inception):
            c = m.branch3[1].conv
            m.branch3[1].conv = nn.Conv2d(c.in_channels, c.out_channels, 5, padding=2, bias=False)
    g.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    g.avgpool = nn.AvgPool2d(7, stride=1)
    return g


def table1_nets(googlenet: str = "caffe") -> dict[str, nn.Module]:
    """Table 1's three nets, geometry only (built on the meta device: no weights, no memory), as
    ``nn.Sequential`` s of torchvision's modules: AlexNet and VGG16 convolutionalized and decapitated
    (``features``, then fc6 as a 6×6 / 7×7 convolution and fc7 as a 1×1 one); GoogLeNet's trunk up to
    inception5b and its average pool, in the Caffe geometry (``googlenet="caffe"``) or torchvision's."""
    if googlenet not in ("caffe", "torchvision"):
        raise ValueError(f"googlenet={googlenet!r}: use 'caffe' or 'torchvision'")
    with torch.device("meta"):
        dense = {name: convolutionalize(build(), decapitate=True) for name, build in
                 (("FCN-AlexNet", torchvision.models.alexnet), ("FCN-VGG16", torchvision.models.vgg16))}
        g = torchvision.models.googlenet(aux_logits=False, init_weights=False)
    if googlenet == "caffe":
        with torch.device("meta"):
            caffe_googlenet(g)
    nets = {name: nn.Sequential(OrderedDict(d.named_children())) for name, d in dense.items()}
    nets["FCN-GoogLeNet"] = nn.Sequential(OrderedDict((n, getattr(g, n)) for n in GOOGLENET_TRUNK + ("avgpool",)))
    return nets


def equivalent_pad(classifier: nn.Module, reference_kernel: int = 7, reference_pad: int = REFERENCE_PAD) -> int:
    """conv1 padding that puts this classifier's coarse FCN grid where the reference's is.

    The reference pads conv1 by 100 for VGG16, whose fc6 is 7×7. A classifier with the same
    convolutions but a k×k fc6 (the stand-in: 3×3) centres its coarse cells 32·(7 − k)/2 px further
    left; padding that much less puts every coarse cell, and so the final crops (19, 27, 31), exactly
    where the reference has them — the same output grid over the image at a fraction of the cost
    (a 64-px image is convolved at 104² instead of 264²). Computed from the coordinate maps.
    """
    dense = convolutionalize(classifier, decapitate=True)
    feats = list(dense.features)
    caffe_arithmetic(feats, pad=0)
    k = dense.fc6.kernel_size[0]
    c_own = rf.coord_map(feats + [nn.Conv2d(1, 1, k, device="meta")])[1]
    c_ref = rf.coord_map(feats + [nn.Conv2d(1, 1, reference_kernel, device="meta")])[1]
    pad = reference_pad + c_own - c_ref
    if pad.denominator != 1 or pad < 0:
        raise rf.GeometryError(f"no conv1 padding puts a {k}×{k} fc6's grid on the reference's (got {pad})")
    return int(pad)


def standin_fcn(variant: str = "32s", device="cpu", pad: int | str = "equivalent",
                num_classes: int | None = None) -> FCN:
    """An FCN built from the course's pretrained stand-in VGG16 (:func:`fcnlib.pretrain.pretrained`),
    the embedded tier's substitute for ImageNet weights. ``variant``: "32s", "32s-fixed", "16s", "8s".
    ``pad``: conv1's padding; "equivalent" (default) is :func:`equivalent_pad` — 36 for the stand-in's
    3×3 fc6, the reference's coarse grid and final crops; 100 is the reference's number itself."""
    from . import pretrain
    from .data import NUM_CLASSES
    classifier = pretrain.pretrained("vgg16", device="cpu")
    if pad == "equivalent":
        pad = equivalent_pad(classifier)
    model = fcn_from_classifier(classifier, variant, num_classes or NUM_CLASSES, pad, source="standin-vgg16")
    return model.to(device)


# ---------------------------------------------------------------------- the "all zeros" check
@torch.no_grad()
def check_transplanted(model: FCN, probe: bool = True, error: bool = True) -> dict:
    """Make sure the FCN's backbone holds a classifier's weights; else raise (or warn) with what to do.

    The reference repository's most common question is "why are all outputs zero". An FCN's score
    layers are zero-initialized (§4.3), so *every* new FCN outputs exactly 0 (uniform scores →
    argmax background) until it trains; with a transplanted backbone the gradient of the loss
    moves ``score_fr`` at the first step. Without one (weights never loaded, a random or zero
    backbone) fc7 carries little or nothing, training crawls or stays stuck, and the net predicts
    background everywhere. Checks: the ``transplanted`` flag set by the builders that copy weights
    (kept in checkpoints), and with ``probe`` a forward pass showing fc7 responds to its input.
    Returns ``{"transplanted", "source", "fc7_active", "fc7_varies", "outputs_all_zero"}``.
    """
    dev = next(model.parameters()).device
    report = {"transplanted": bool(model.transplanted), "source": model.source}
    problems = []
    if not report["transplanted"]:
        problems.append("no classifier's weights were transplanted into its backbone (it was built with "
                        "weights=None, or from a state dict that never held them)")
    if probe:
        was = model.training
        model.eval()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 32, 32, generator=g).to(dev)
        fc7 = model.fc(model.to_pool5(model.to_pool4(model.to_pool3(x))))
        out = model(x)
        model.train(was)
        report.update(fc7_active=(fc7 != 0).float().mean().item(),
                      fc7_varies=(fc7[0] - fc7[1]).abs().max().item() > 1e-6 * (1 + fc7.abs().max().item()),
                      outputs_all_zero=bool((out == 0).all()))
        if report["fc7_active"] == 0 or not report["fc7_varies"]:
            problems.append("fc7 gives the same (or zero) response to different images: the backbone is dead")
    if problems:
        msg = ("FCN-" + model.variant + ": " + "; ".join(problems) + ". Its zero-initialized score layers "
               "then stay near zero and it predicts background everywhere ('why are all outputs zero?'). "
               "Build it from a trained classifier — fcn_from_classifier(classifier), standin_fcn(...), "
               "fcn32s(weights='imagenet') — or load a trained FCN's checkpoint. Training from scratch on "
               "purpose? Set model.transplanted.fill_(True) to silence this check.")
        if error:
            raise NotTransplantedError(msg)
        warnings.warn(msg, stacklevel=2)
    return report
