"""FCN-32s, FCN-16s, FCN-8s: the fully convolutional net with zero, one or two skips (§4.2, Fig. 3).

The net itself, as Fig. 3 draws it: :class:`FCN` (its layers as named children, one forward that
reads like the figure for every variant) and the layer helpers and geometry it is built with. The
builders that make one from a classifier (§4.1) are :mod:`fcnlib.transplant` (``fcn8s``,
``fcn_from_classifier``, ``standin_fcn``, ``check_transplanted``, …); the staged surgery that adds the
skips (§4.2) is :mod:`fcnlib.surgery` (``fcn16s_from``, ``fcn8s_from``, ``freeze_backbone``, …); the
compiled inference path wraps these modules from :mod:`fcnlib.fast`.

``variant``: "32s", "16s", "8s", "pool4" (and "32s-fixed" for the builders that take a variant).
An :class:`FCN` maps (N, 3, H, W) → scores (N, K, H, W) for any H, W; an input holding NaN or ±inf is
refused (:func:`check_finite`). ``model.maps(x)``: the score maps of one pass (``score_fr`` stride 32,
``fuse_pool4`` 16, ``fuse_pool3`` 8, ``final``);
``model.map_geometry()``: each map's (stride, centre); ``model.crop_offsets()``; ``model.describe()``
and ``model.backbone_stages()``: the geometry Fig. 3 is drawn from; ``model.paths()``: the module path
to each map (what :mod:`fcnlib.receptive_field` reads).

The geometry is the reference implementation's (PAPER-FACTS.md): conv1_1 padded by 100, pooling in
ceil mode, fc6 a k×k convolution (k = 7 for VGG16, the stand-in's fc6 grid for stand-ins), fc7 1×1,
1×1 score layers, transposed-convolution upsampling (kernel 2f, stride f, bilinear; the final one
fixed, the 2× ones learned). Every crop offset is computed from the layers' coordinate maps
(:func:`fcnlib.receptive_field.crop_offset`) when the net is built — 19 (FCN-32s), 5 and 27 (FCN-16s),
5, 9 and 31 (FCN-8s) for full-width VGG16 — nothing is typed in. Where a skip's map does not cover the
upsampled map it is added to (the stand-in's 3×3 fc6 moves the coarse grid by 64 px relative to pool3
and pool4), the skip's 1×1 score layer is zero-padded by the missing cells and the crop derived again.
"""
from __future__ import annotations


import torch
from torch import fx, nn

from . import receptive_field as rf
from .upsample import fill_bilinear_, upsample_layer

VARIANTS = ("32s", "16s", "8s", "pool4")
REFERENCE_PAD = 100  # conv1_1's padding in the reference implementation (PAPER-FACTS.md)
FINAL_FACTOR = {"32s": 32, "16s": 16, "8s": 8, "pool4": 16}


class NotTransplantedError(RuntimeError):
    """An FCN whose backbone holds no classifier weights (see :func:`check_transplanted`)."""


def score_layer(in_channels: int, num_classes: int, padding: int = 0) -> nn.Conv2d:
    """A 1×1 class-scoring convolution, zero-initialized (§4.3: random init was no better)."""
    conv = nn.Conv2d(in_channels, num_classes, 1, padding=padding)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def fixed_upsample(channels: int, factor: int, kernel: int | None = None) -> nn.ConvTranspose2d:
    """The final, fixed bilinear upsampling (§4.3): :func:`fcnlib.upsample.upsample_layer` with
    ``depthwise=True`` — the reference's bilinear filter on the channel diagonal, stored as
    groups = channels, which skips the K² − K zero filters (21× fewer multiply-adds for 21 classes).
    Kernel 2·factor; another ``kernel`` (AlexNet's grid needs 2·factor − 1) is filled the same way.
    """
    if kernel in (None, 2 * factor):
        return upsample_layer(channels, factor, learnable=False, depthwise=True)
    layer = nn.ConvTranspose2d(channels, channels, kernel, stride=factor, groups=channels, bias=False)
    fill_bilinear_(layer)
    layer.weight.requires_grad_(False)
    return layer


def _last_out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"no convolution in {type(module).__name__}: cannot tell its channels")
    return convs[-1].out_channels


class FCN(nn.Module):
    """A fully convolutional net with zero, one or two skips (Fig. 3).

    Children: ``to_pool3``, ``to_pool4``, ``to_pool5`` (the classifier's convolutions, cut where the
    stride reaches 8 and 16), ``fc`` (fc6, relu6, drop6, fc7, relu7, drop7 as convolutions), the
    zero-initialized 1×1 scores ``score_fr`` / ``score_pool4`` / ``score_pool3``, the learned 2×
    upsamplings ``upscore2`` / ``upscore_pool4`` (bilinear at start), the fixed final ``upscore``
    and the :class:`~fcnlib.receptive_field.Crop` modules ``crop_pool4``, ``crop_pool3``, ``crop``
    with offsets from the coordinate maps. ``variant``: "32s", "16s", "8s" or "pool4" (§4.2's
    control: scores from pool4 alone, no fc path). The buffer ``transplanted`` records whether the
    backbone holds a classifier's weights (kept in checkpoints).
    """

    def __init__(self, to_pool3: nn.Module, to_pool4: nn.Module, to_pool5: nn.Module, fc: nn.Module,
                 num_classes: int = 21, variant: str = "32s", arch: str = "vgg16", source: str = "",
                 channels: tuple[int, int, int, int] | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: use one of {', '.join(VARIANTS)}")
        self.variant, self.arch, self.num_classes, self.source = variant, arch, num_classes, source
        self.to_pool3, self.to_pool4, self.to_pool5, self.fc = to_pool3, to_pool4, to_pool5, fc
        self.register_buffer("transplanted", torch.tensor(bool(source)))
        K = num_classes
        # (pool3, pool4, pool5, fc7) widths: given, or read off the layers
        c3, c4, c5, c7 = channels or tuple(_last_out_channels(m) for m in (to_pool3, to_pool4, to_pool5, fc))
        self.channels = {"pool3": c3, "pool4": c4, "pool5": c5, "fc7": c7}
        p3, p4 = [to_pool3], [to_pool3, to_pool4]
        if variant != "pool4":
            self.score_fr = score_layer(c7, K)
            coarse = [to_pool3, to_pool4, to_pool5, fc, self.score_fr]          # stride 32
        if variant in ("16s", "8s"):
            self.upscore2 = upsample_layer(K, 2, learnable=True)               # learned, bilinear at start
            self.score_pool4 = score_layer(c4, K)
            up = coarse + [self.upscore2]                                        # stride 16
            self.crop_pool4 = rf.Crop(_skip_offset(p4, self.score_pool4, up))
            coarse = up
        if variant == "8s":
            self.upscore_pool4 = upsample_layer(K, 2, learnable=True)
            self.score_pool3 = score_layer(c3, K)
            up = coarse + [self.upscore_pool4]                                   # stride 8
            self.crop_pool3 = rf.Crop(_skip_offset(p3, self.score_pool3, up))
            coarse = up
        if variant == "pool4":
            self.score_pool4 = score_layer(c4, K)
            coarse = p4 + [self.score_pool4]
        self.upscore, offset = _final_upsample(coarse, K, FINAL_FACTOR[variant])
        self.crop = rf.Crop(offset)

    # ------------------------------------------------------------------ forward
    def forward(self, x):                                # (N, 3, H, W) → (N, K, H, W)
        return self.maps(x)["final"]

    def maps(self, x) -> dict:
        """Every score map of one forward pass, as Fig. 3 draws them: ``score_fr`` (stride 32, the
        coarse map; ``score_pool4`` for the pool4 control), then per skip the upsampled map, the
        cropped skip scores and their sum (``fuse_pool4`` stride 16, ``fuse_pool3`` stride 8), and
        ``final`` (N, K, H, W)."""
        check_finite(x)
        m = {}
        pool3 = self.to_pool3(x)                                     # (N, C3, ~(H+198)/8, …) with pad 100
        pool4 = self.to_pool4(pool3)                                 # (N, C4, …/16)
        if self.variant == "pool4":
            m["score_pool4"] = score = self.score_pool4(pool4)       # (N, K, …/16)
        else:
            m["score_fr"] = score = self.score_fr(self.fc(self.to_pool5(pool4)))  # (N, K, h, w), stride 32
        if self.variant in ("16s", "8s"):
            m["upscore2"] = up = self.upscore2(score)                # (N, K, 2h + 2, 2w + 2)
            m["score_pool4c"] = skip = self.crop_pool4(self.score_pool4(pool4), up)
            m["fuse_pool4"] = score = up + skip                      # stride 16
        if self.variant == "8s":
            m["upscore_pool4"] = up = self.upscore_pool4(score)
            m["score_pool3c"] = skip = self.crop_pool3(self.score_pool3(pool3), up)
            m["fuse_pool3"] = score = up + skip                      # stride 8
        m["final"] = self.upsample(score, x)                         # (N, K, H, W)
        return m

    def upsample(self, score, x):
        """Fig. 3's last step: the fixed bilinear ×f upsampling of the scores, cropped to the input.
        (:func:`fcnlib.fast.windowed_upsampling` computes only the cropped window, for training.)"""
        return self.crop(self.upscore(score), x)                     # (N, K, H, W)

    def coarse(self) -> nn.Sequential:
        """The stride-32 path from the input to ``score_fr`` as one ``nn.Sequential`` sharing this
        net's parameters: the strided net that shift-and-stitch and rarefaction take (§3.2)."""
        if self.variant == "pool4":
            raise ValueError("the pool4 control has no score_fr: take the coarse net of an FCN-32s, 16s or 8s")
        return nn.Sequential(self.to_pool3, self.to_pool4, self.to_pool5, self.fc, self.score_fr)

    # ------------------------------------------------------------------ geometry
    def paths(self) -> dict:
        """The module path from the input to each named map (for receptive_field's coord maps)."""
        p = {"pool3": [self.to_pool3], "pool4": [self.to_pool3, self.to_pool4]}
        p["pool5"] = p["pool4"] + [self.to_pool5]
        p["fc7"] = p["pool5"] + [self.fc]
        if self.variant == "pool4":
            p["score_pool4"] = p["pool4"] + [self.score_pool4]
            p["upscore"] = p["score_pool4"] + [self.upscore]
            return p
        p["score_fr"] = p["fc7"] + [self.score_fr]
        last = p["score_fr"]
        if self.variant in ("16s", "8s"):
            p["score_pool4"] = p["pool4"] + [self.score_pool4]
            p["upscore2"] = p["fuse_pool4"] = last = p["score_fr"] + [self.upscore2]
        if self.variant == "8s":
            p["score_pool3"] = p["pool3"] + [self.score_pool3]
            p["upscore_pool4"] = p["fuse_pool3"] = last = last + [self.upscore_pool4]
        p["upscore"] = last + [self.upscore]
        return p

    def backbone_stages(self) -> list[dict]:
        """The backbone's downsampling layers in order (pool1 … pool5 for VGG16): name, stride (from
        the coordinate maps) and channels of the map each one outputs."""
        layers = list(rf.leaves([self.to_pool3, self.to_pool4, self.to_pool5]))
        out, channels = [], None
        for i, m in enumerate(layers):
            if isinstance(m, nn.Conv2d):
                channels = m.out_channels
            s = getattr(m, "stride", 1)
            if isinstance(m, (nn.MaxPool2d, nn.Conv2d)) and (s if isinstance(s, int) else s[0]) > 1:
                stride = rf.coord_map(layers[:i + 1])[0]
                out.append({"name": f"pool{len(out) + 1}" if isinstance(m, nn.MaxPool2d) else f"conv{len(out) + 1}",
                            "stride": int(stride), "channels": channels, "kernel": m.kernel_size
                            if isinstance(m.kernel_size, int) else m.kernel_size[0]})
        return out

    def map_geometry(self) -> dict:
        """``{map: (stride, centre)}``: input coordinate of unit u = stride · u + centre (Caffe's
        coord map; the crops move it), for every map of :meth:`maps`."""
        g = {name: rf.coord_map(path) for name, path in self.paths().items()}
        for skip, crop in (("score_pool4", "crop_pool4"), ("score_pool3", "crop_pool3")):
            if hasattr(self, crop):
                s, c = g[skip]
                g[skip + "c"] = (s, c + s * getattr(self, crop).offset[0])
        if self.variant in ("16s", "8s"):
            g["fuse_pool4"] = g["upscore2"]
        if self.variant == "8s":
            g["fuse_pool3"] = g["upscore_pool4"]
        s, c = g["upscore"]
        g["final"] = (s, c + s * self.crop.offset[0])
        return g

    def crop_offsets(self) -> dict:
        """The crops' offsets (derived at construction): ``{"pool4": …, "pool3": …, "final": …}``."""
        out = {}
        for key, name in (("pool4", "crop_pool4"), ("pool3", "crop_pool3"), ("final", "crop")):
            if hasattr(self, name):
                out[key] = getattr(self, name).offset[0]
        return out

    def crop_paths(self) -> dict:
        """``{crop: (bottom, reference)}``: the module paths from the input to the map each crop cuts
        and to the map it is cut like (``[]``: the image) — ``pool4``, ``pool3`` (the skips) and
        ``final``. :func:`fcnlib.receptive_field.crop_offset` of each gives :meth:`crop_offsets`."""
        p, out = self.paths(), {}
        if hasattr(self, "crop_pool4") and self.variant != "pool4":
            out["pool4"] = (p["score_pool4"], p["upscore2"])
        if hasattr(self, "crop_pool3"):
            out["pool3"] = (p["score_pool3"], p["upscore_pool4"])
        out["final"] = (p["upscore"], [])
        return out

    def describe(self) -> dict:
        """Layer geometry for Fig. 3, read from the modules: each map's stride, channels, and the
        crops, score layers and upsamplings with their kernels and strides."""
        geo = self.map_geometry()
        chans = dict(self.channels)
        fc6 = next((m for m in self.fc.modules() if isinstance(m, nn.Conv2d)), None)
        ups = {n: {"kernel": m.kernel_size[0], "stride": m.stride[0], "learned": m.weight.requires_grad}
               for n, m in self.named_children() if isinstance(m, nn.ConvTranspose2d)}
        return {"variant": self.variant, "arch": self.arch, "num_classes": self.num_classes,
                "strides": {k: float(s) for k, (s, _) in geo.items()},
                "channels": {**chans, **{k: self.num_classes for k in geo if k not in chans}},
                "crops": self.crop_offsets(), "upsampling": ups,
                "fc6_kernel": fc6.kernel_size[0] if fc6 else None, "conv1_padding": _first_conv(self).padding[0],
                "skip_padding": {n: m.padding[0] for n, m in self.named_children()
                                 if n.startswith("score_pool") and m.padding[0]}}


def check_finite(x: torch.Tensor) -> None:
    """Refuse an input holding NaN or ±inf: through the ReLUs and max poolings a NaN pixel would
    silently come out as background over its whole receptive field (hundreds of pixels, §3.1).
    One ``isfinite`` pass over the input; skipped while torch.fx traces, Dynamo compiles, or on meta
    tensors (no values to check)."""
    if isinstance(x, fx.Proxy) or torch.compiler.is_compiling() or x.is_meta:
        return
    if not torch.isfinite(x).all():
        nan, bad = int(torch.isnan(x).sum()), int((~torch.isfinite(x)).sum())
        raise ValueError(f"{bad} non-finite values ({nan} NaN, {bad - nan} ±inf) in the input of shape "
                         f"{tuple(x.shape)}: an FCN would turn each into background over its whole "
                         "receptive field. Check the data loader and the normalization (a zero std, a "
                         "corrupt image, an uninitialized buffer), or torch.nan_to_num the input")


def _first_conv(model) -> nn.Conv2d:
    return next(m for m in model.to_pool3.modules() if isinstance(m, nn.Conv2d))


def _skip_offset(bottom: list, score: nn.Conv2d, reference: list) -> int:
    """Crop offset of a skip's scores against the upsampled map they are added to, from the coord
    maps. Where the skip's map does not cover the reference's — its first unit lies after the
    reference's (a negative offset), or for some input sizes it ends too early — the 1×1 score layer
    is zero-padded by the missing cells (the least padding that fits the most input sizes of 1…160,
    from the layer arithmetic), and the crop is again computed by crop_offset. With conv1 padded
    (100, or :func:`equivalent_pad`) the padded cells lie in conv1's padding, away from the image."""
    (sb, cb), (sr, cr) = rf.coord_map(bottom + [score]), rf.coord_map(reference)
    raw = (cr - cb) / sb
    if sb != sr or raw.denominator != 1:
        return rf.crop_offset(bottom + [score], reference)  # raises the GeometryError that says why
    first = max(0, -int(raw))
    best = None
    for pad in range(first, first + 9):   # the fewest sizes that do not fit, with the least padding
        score.padding = (pad, pad)
        bad = len(rf.misaligned_sizes([(bottom + [score], reference)],
                                      range(1, 161)))
        if best is None or bad < best[0]:
            best = (bad, pad)
        if bad == 0:
            break
    score.padding = (best[1], best[1])
    return rf.crop_offset(bottom + [score], reference)


def _final_upsample(path: list, channels: int, factor: int):
    """The fixed bilinear upsampling to the image and its crop offset: kernel 2f if that puts the
    map on the pixel grid, else 2f − 1 (AlexNet's odd-centred grid; the reference uses 63 there)."""
    err = None
    for kernel in (2 * factor, 2 * factor - 1):
        up = fixed_upsample(channels, factor, kernel)
        try:
            return up, rf.crop_offset(path + [up], [])
        except rf.GeometryError as e:
            err = err or e   # the kernel-2f error says more (e.g. a negative offset)
    raise rf.GeometryError(f"the final ×{factor} upsampling cannot be aligned with the image: {err}. "
                           "A negative offset means the coarse map does not reach the image's top-left "
                           "corner: pad conv1 more (the paper pads by 100)")
