"""Dense output from a strided net without interpolation: shift-and-stitch and filter rarefaction.

Section 3.2. A net whose outputs are subsampled by f can be made dense in two equivalent ways:

- **Shift-and-stitch** (OverFeat's trick): run the net on the f² shifted inputs, one for every
  (dy, dx) ∈ {0, …, f − 1}², and interlace the f² coarse outputs into one map f times denser.
- **Filter rarefaction** (the *à trous* trick): set a layer's stride s to 1 and enlarge the next
  filter to f'_ij = f_{i/s, j/s} if s divides i and j, else 0 (:func:`rarefy_filter`) — in PyTorch,
  multiply its dilation by s (and its padding, to keep the grid aligned). Repeat layer by layer
  until no subsampling is left (:func:`rarefy`): one pass gives the same dense map.

Conventions (ours; the paper pads at the top/left instead, which numbers the shifts the other way):

- Shift (dy, dx) moves the image dy rows up and dx columns left inside a fixed H × W frame: the frame
  shows ``x[dy:dy + H, dx:dx + W]`` of x padded at the bottom/right by f − 1 rows/columns of ``fill``
  (so the last dy rows and dx columns of a shifted frame are fill). Every shift has the same input
  size and the same h × w coarse output.
- Coarse cell (k, l) of shift (dy, dx) goes to dense position (k·f + dy, l·f + dx). That is exactly
  ``F.pixel_shuffle`` with the f² outputs stacked in channel order k·f² + dy·f + dx.
- Dense position p is then the net's window starting at input row p + ``start`` (see
  :func:`geometry`), in both methods: the rarefied net given the same bottom/right-padded input
  (:func:`rarefied_forward`) shares its top-left corner with the stitched map.

When the two agree (tests/test_stitch.py, float64, to rounding):

- A net without padding: on the whole stitched map, for any input size and any fill.
- A net with padding (in any layer): only in the interior (:func:`interior`), and there for any fill.
  A strided layer pads with zeros on *its own* coarse grid; after a shift those zeros stand where
  the rarefied net has real values (top/left), and at the bottom/right a shifted frame ends where
  the rarefied net still sees input or fill. The identity holds for every coarse cell whose
  receptive field lies inside the frame: rows k·f … k·f + f − 1 with k·f + start ≥ 0 and
  k·f + start + rf ≤ H (columns alike). Outside it every coarse row of cells differs somewhere
  (generically: with fill 0, a window that passes the bottom edge only through the first layer's
  zero padding agrees by coincidence), but the unshifted rows (dy = 0) always agree at the top:
  no shift, so the padding lines up.
- Ceil-mode pooling gives the strided net extra cells at the bottom/right; they hang off the frame,
  so they are outside the interior.
- Pointwise layers (ReLU, BatchNorm in eval mode, dropout in eval mode) commute with both.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import receptive_field as rf
from . import upsample as up
from .field_algebra import is_pointwise, square
from .receptive_field import Geometry

WINDOWED = (nn.Conv2d, nn.MaxPool2d)


def _layers(net: nn.Module):
    """The leaf layers of a (nested) nn.Sequential, in order; unsupported ones raise TypeError."""
    if isinstance(net, nn.Sequential):
        for child in net:
            yield from _layers(child)
    elif isinstance(net, WINDOWED) or is_pointwise(net):
        if isinstance(net, nn.Conv2d):
            if isinstance(net.padding, str):
                raise ValueError(f"{net}: give the padding as numbers, not {net.padding!r}")
            if net.padding_mode != "zeros":
                raise ValueError(f"{net}: only zero padding is supported, not {net.padding_mode!r}")
        yield net
    else:
        raise TypeError(f"{type(net).__name__} is not supported: shift-and-stitch and rarefaction here "
                        "take an nn.Sequential of Conv2d, MaxPool2d and pointwise layers (those of "
                        "fcnlib.field_algebra.POINTWISE; register_pointwise adds one)")


def _window(m) -> tuple[int, int, int, int]:
    """(kernel, stride, padding, dilation) of a Conv2d or MaxPool2d (square ones only)."""
    return tuple(square(getattr(m, a), f"{m}: {a}") for a in ("kernel_size", "stride", "padding", "dilation"))


def geometry(net: nn.Module) -> Geometry:
    """The course's one geometry (:func:`fcnlib.receptive_field.geometry`) of a net this module takes:
    field size, jump (total stride) and centre; unsupported layers are refused first."""
    for m in _layers(net):
        if isinstance(m, WINDOWED):
            _window(m)  # square windows only
    return rf.geometry(net)


def rarefy_filter(weight: torch.Tensor, s: int) -> torch.Tensor:
    """The paper's enlarged filter: f'_ij = f_{i/s, j/s} if s divides i and j, else 0 (zero-based).

    ``weight`` (..., k, k) → (..., (k − 1)s + 1, (k − 1)s + 1). Convolving with it equals convolving
    with ``weight`` at dilation s.
    """
    *lead, kh, kw = weight.shape
    out = weight.new_zeros(*lead, (kh - 1) * s + 1, (kw - 1) * s + 1)
    out[..., ::s, ::s] = weight
    return out


class PaddedMaxPool2d(nn.MaxPool2d):
    """MaxPool2d that pads with −inf itself, so its padding may exceed half the (undilated) kernel,
    which ``F.max_pool2d`` refuses: a rarefied 3×3 pool with padding 1 at dilation D needs padding D."""

    def forward(self, x):
        p = square(self.padding, f"{self}: padding")
        x = F.pad(x, (p, p, p, p), value=float("-inf"))  # what max pooling's own padding means
        return F.max_pool2d(x, self.kernel_size, self.stride, 0, self.dilation, self.ceil_mode,
                            self.return_indices)


def _rebuild(module: nn.Module, fn) -> nn.Module:
    """A copy of a nested nn.Sequential with ``fn`` applied to each leaf (same child names)."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(OrderedDict((name, _rebuild(child, fn)) for name, child in module.named_children()))
    return fn(module)


def rarefy(net: nn.Module, keep_stride: int = 1) -> nn.Module:
    """A copy of ``net`` whose output stride is ``keep_stride`` (default 1: dense).

    The strided layers are kept while their strides multiply to ``keep_stride``; from the first one
    past it every stride becomes 1 and every later window (convolution and pooling) is dilated by the
    product D of the strides removed before it, its padding multiplied by D. Weights are copied,
    the structure is kept (same state_dict keys). ``rarefy(net, f')`` then stitched with f'² shifts
    equals ``rarefy(net)``: removing subsampling in stages or at once is the same.
    """
    list(_layers(net))  # validate first
    state = {"kept": 1, "D": 1}

    def one(m: nn.Module) -> nn.Module:
        m = copy.deepcopy(m)
        if not isinstance(m, WINDOWED):
            return m
        k, s, p, d = _window(m)
        D = state["D"]
        if D == 1 and state["kept"] * s <= keep_stride:
            state["kept"] *= s
            return m
        state["D"] = D * s
        if isinstance(m, nn.Conv2d):
            m.stride, m.dilation, m.padding = (1, 1), (d * D, d * D), (p * D, p * D)
            return m
        return PaddedMaxPool2d(k, stride=1, padding=p * D, dilation=d * D, ceil_mode=m.ceil_mode,
                               return_indices=m.return_indices)

    new = _rebuild(net, one)
    if state["kept"] != keep_stride:
        raise ValueError(f"keep_stride {keep_stride} is not a product of the first strides of the net "
                         f"(total stride {state['kept'] * state['D']})")
    return new


def shift_and_stitch(net: nn.Module, x: torch.Tensor, f: int | None = None, fill: float = 0.0,
                     chunk: int | None = None) -> torch.Tensor:
    """Run ``net`` on the f² shifted inputs and interlace: (N, C, H, W) → (N, K, h·f, w·f).

    ``dense[..., k·f + dy, l·f + dx] = net(shift(x, dy, dx))[..., k, l]`` where ``shift`` shows
    ``x`` moved dy rows up and dx columns left in the H × W frame, ``fill`` coming in at the
    bottom/right. ``f`` defaults to the net's total stride; ``chunk`` shifts go through the net per
    call (default: all f² in one batch).
    """
    f = f or geometry(net).jump
    N, C, H, W = x.shape
    xp = F.pad(x, (0, f - 1, 0, f - 1), value=fill)  # (N, C, H + f − 1, W + f − 1)
    shifts = [(dy, dx) for dy in range(f) for dx in range(f)]  # index dy·f + dx
    chunk = chunk or len(shifts)
    outs = []
    for i in range(0, len(shifts), chunk):
        batch = torch.cat([xp[:, :, dy:dy + H, dx:dx + W] for dy, dx in shifts[i:i + chunk]])
        outs.append(net(batch))  # (n·N, K, h, w)
    y = torch.cat(outs)  # (f²·N, K, h, w), shift-major
    K, h, w = y.shape[1:]
    y = y.view(f * f, N, K, h, w).permute(1, 2, 0, 3, 4).reshape(N, K * f * f, h, w)  # k·f² + dy·f + dx
    return F.pixel_shuffle(y, f)  # (N, K, h·f, w·f)


def rarefied_forward(rnet: nn.Module, x: torch.Tensor, f: int, fill: float = 0.0) -> torch.Tensor:
    """The rarefied net on the same frame as :func:`shift_and_stitch` (x padded at the bottom/right
    by f − 1 of ``fill``). Its top-left h·f × w·f corner is the stitched map: everywhere for a net
    without padding, in :func:`interior` for one with."""
    return rnet(F.pad(x, (0, f - 1, 0, f - 1), value=fill))


def interior(net: nn.Module, size: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of the stitched map (input frame ``size``) where shift-and-stitch and the
    rarefied net agree whatever the padding: coarse cells whose receptive field lies in the frame."""
    g = geometry(net)
    f = g.jump

    def one(n: int) -> slice:
        k_lo = max(0, math.ceil(-g.start / f))
        k_hi = (n - g.rf - g.start) // f  # last cell with k·f + start + rf ≤ n
        return slice(k_lo * f, max(k_lo, k_hi + 1) * f)
    return one(size[0]), one(size[1])


class ShiftTagger(nn.Module):
    """A stand-in 'net' of stride f that ignores the image: channel 0 of its output is the batch
    position (in :func:`shift_and_stitch`, the shift's index dy·f + dx), channels 1, 2 the cell (k, l).
    Stitching it shows where every shift and cell lands."""

    def __init__(self, f: int):
        super().__init__()
        self.f = f

    def forward(self, x):  # (n, C, H, W) → (n, 3, H // f, W // f)
        n, _, H, W = x.shape
        h, w = H // self.f, W // self.f
        b = torch.arange(n, dtype=x.dtype, device=x.device).view(n, 1, 1).expand(n, h, w)
        k = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1).expand(n, h, w)
        l = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w).expand(n, h, w)
        return torch.stack([b, k, l], 1)


def shift_map(f: int, cells: int = 4) -> torch.Tensor:
    """(cells·f, cells·f) long: the index dy·f + dx of the shift that fills each stitched position,
    by stitching a :class:`ShiftTagger`."""
    return shift_and_stitch(ShiftTagger(f), torch.zeros(1, 1, cells * f, cells * f), f)[0, 0].long()


def pixel_shift(net: nn.Module) -> int:
    """Rows/columns to pad at the top/left so that dense entry q is the window centred nearest
    pixel q: the receptive-field centre rounded half up (its centre then lies in [q − ½, q + ½))."""
    return math.floor(geometry(net).centre + 0.5)


def strided_net(num_classes: int = 21, widths=(16, 32, 32, 64), in_channels: int = 3) -> nn.Sequential:
    """The course's small strided segmentation net: for each of ``widths[:-1]`` a 3×3 convolution
    (padding 1), BatchNorm, ReLU and 2×2 max pooling; then a 3×3 convolution at ``widths[-1]`` and a
    1×1 score layer. Total stride 2^(len(widths) − 1) (8 by default), receptive-field centre
    (stride − 1)/2 like ``F.interpolate``'s cells, so the bilinear deconvolution needs crop f/2."""
    layers, c = [], in_channels
    for i, w in enumerate(widths, 1):
        layers += [(f"conv{i}", nn.Conv2d(c, w, 3, padding=1)), (f"bn{i}", nn.BatchNorm2d(w)),
                   (f"relu{i}", nn.ReLU(inplace=True))]
        if i < len(widths):
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
        c = w
    layers.append(("score", nn.Conv2d(c, num_classes, 1)))
    return nn.Sequential(OrderedDict(layers))


def _out_channels(net: nn.Module) -> int:
    convs = [m for m in _layers(net) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the net has no convolution, so no score channels to upsample")
    return convs[-1].out_channels


class Upsampled(nn.Module):
    """A strided net and a bilinear-initialized transposed convolution (kernel 2f, stride f, fixed or
    learnable), cropped to the input: the FCN way from coarse to dense (Section 3.3).

    The learnable layer is :func:`fcnlib.upsample.upsample_layer`'s full K × K one (free to mix
    classes once trained, like the paper's learned upsamplings); the fixed one is its depthwise
    form (the same map, K times fewer FLOPs: nothing is computed with the zeros off the diagonal).
    """

    def __init__(self, net: nn.Module, learnable: bool = False):
        super().__init__()
        g = geometry(net)
        if g.jump == 1:
            raise ValueError("the net is dense already (stride 1): there is nothing to upsample")
        self.net, self.centre = net, g.centre
        self.up = up.upsample_layer(_out_channels(net), g.jump, learnable, depthwise=not learnable)

    def forward(self, x):  # (N, C, H, W) → (N, K, H, W)
        return up.upsample_to_input(self.net(x), self.up, self.centre, x.shape[-2:])


def deconv_margin(g: Geometry, n: int) -> int:
    """The fewest zero rows to add around an n-px input so that :func:`fcnlib.upsample.upsample_to_input`
    (kernel 2·stride) covers it: 0 for a net padded like the reference; more for a net rarefied part of
    the way, whose unpadded dilated layers lose border cells that its strided form kept. With margin m,
    cell k sits at k·stride + centre − m; the net gives (n + 2m − 2·start − rf) // stride + 1 cells,
    and the map they upsample to must lack at most one stride at either end (:func:`fcnlib.upsample.shortfall`)."""
    f = g.jump
    for m in range(n + g.rf + 1):
        cells = (n + 2 * m - 2 * g.start - g.rf) // f + 1
        if cells > 0 and max(up.shortfall((cells + 1) * f, up.align_crop(2 * f, g.centre - m), n)) <= f:
            return m
    raise ValueError(f"no margin makes the cells of {g} cover {n} px")


def dense_scores(net: nn.Module, x: torch.Tensor, method: str = "rarefied", *, rnet=None,
                 upsample: nn.ConvTranspose2d | None = None, chunk: int | None = None) -> torch.Tensor:
    """Scores (N, K, H, W) on the input's pixel grid from a strided net, three ways.

    - ``"stitch"``: :func:`shift_and_stitch` (f² passes) of x padded with zeros by :func:`pixel_shift`
      at the top/left and at the bottom/right just enough for the rarefied net to give H × W outputs;
      ``"rarefied"``: one pass of ``rnet`` (default ``rarefy(net)``) on the same, without the f − 1
      rows of fill :func:`rarefied_forward` adds: they agree in the :func:`interior` of a frame
      f − 1 rows/columns smaller than the padded input.
      Pixel q gets the window centred at q + centre − shift: within half a pixel (exactly half for an
      even total receptive field, as with 2×2 pooling).
    - ``"deconv"``: the coarse scores through ``upsample`` (default the fixed bilinear layer, kernel
      2f, depthwise), placed by :func:`fcnlib.upsample.upsample_to_input` (the input padded by
      :func:`deconv_margin` where the cells would not cover it).
    """
    g = geometry(net)
    H, W = x.shape[-2:]
    if method in ("stitch", "rarefied"):
        s = pixel_shift(net)
        b = max(0, g.rf - 1 - s + 2 * g.start)  # the dense net loses rf − 1 + 2·start rows: give them
        xs = F.pad(x, (s, b, s, b))  # negative s crops
        if method == "stitch":
            y = shift_and_stitch(net, xs, g.jump, chunk=chunk)
        else:
            y = (rnet if rnet is not None else rarefy(net))(xs)
        return up.fit_to(y, (H, W), method)
    if method == "deconv":
        if g.jump == 1:
            raise ValueError("the net is dense already (stride 1): there is nothing to upsample")
        m = deconv_margin(g, max(H, W))
        coarse = net(F.pad(x, (m, m, m, m)) if m else x)  # (N, K, h, w)
        layer = (upsample if upsample is not None
                 else up.upsample_layer(coarse.shape[1], g.jump, depthwise=True).to(x))
        return up.upsample_to_input(coarse, layer, g.centre - m, (H, W))
    raise ValueError(f"unknown method {method!r}: use 'stitch', 'rarefied' or 'deconv'")
