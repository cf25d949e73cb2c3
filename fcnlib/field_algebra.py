"""One layer's effect on the geometry of a map, per spatial axis: Section 3's rule made exact.

:mod:`fcnlib.receptive_field` walks whole graphs (torch.fx) and chains of layers; this module is
what it applies at each step. A map's geometry along one axis (:class:`Axis`) is

- its **jump** (``scale``): input pixels between neighbouring units (a fraction after upsampling);
- its **centre** (``offset``): the input coordinate of unit 0's centre (Caffe's coord_map
  convention: the centre of a k-window is its first index + (k − 1)/2);
- the **fields** ``[lo, hi]`` of units 0 … P − 1, which repeat with period P (P > 1 only after a
  transposed convolution whose stride does not divide its kernel); unit u + P is unit u moved by
  jump · P;
- its size ``n`` and the units ``valid`` that read no padding, when an input size is given.

A window layer (convolution, pooling) with kernel k, stride s, padding p and dilation d maps it by
:meth:`Axis.window`: the field grows by d(k − 1) times the jump and the jump is multiplied by s —
:func:`compose`, the paper's f_ks ∘ g_k's' = (f ∘ g)_{k' + (k−1)s', s s'}. A transposed convolution
divides the jump (:meth:`Axis.transposed`); a crop moves the centre (:meth:`Axis.crop`); a merge of
branches read unit by unit takes the union of their fields (:func:`union`). Layers that act on each
position alone keep the geometry: they are listed once, in :data:`POINTWISE`
(:func:`register_pointwise` adds one), for every module of the course that needs to know.
"""
from __future__ import annotations

import bisect
import math
import operator
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn


class GeometryError(ValueError):
    """A layer whose spatial geometry is unknown, undefined or does not fit the input size."""


def compose(inner: tuple[int, int], outer: tuple[int, int]) -> tuple[int, int]:
    """Section 3's rule: ``(k', s')`` of a stack followed by a layer ``(k, s)`` → ``(k' + (k−1)s', s s')``."""
    (k1, s1), (k, s) = inner, outer
    return k1 + (k - 1) * s1, s * s1


class Crop(nn.Module):
    """Caffe's Crop layer on H, W: ``x[..., o:o+h, o:o+w]`` with (h, w) the size of ``like``.

    The offset comes from :func:`crop_offset` when the network is built. (N, C, H, W) → (N, C, h, w).
    """

    def __init__(self, offset: int | tuple[int, int]):
        super().__init__()
        self.offset = (offset, offset) if isinstance(offset, int) else tuple(offset)

    def forward(self, x, like):
        (oh, ow), (h, w) = self.offset, like.shape[-2:]
        if oh + h > x.shape[-2] or ow + w > x.shape[-1]:
            raise ValueError(f"Crop{self.offset} of a {tuple(x.shape[-2:])} map to {(h, w)} runs past "
                             "its end: this input size misaligns the network (see misaligned_sizes)")
        return x[..., oh:oh + h, ow:ow + w]

    def extra_repr(self):
        return f"offset={self.offset}"


# ------------------------------------------------------------------ one axis of one map
@dataclass(frozen=True)
class Axis:
    scale: Fraction             # jump: input pixels per unit
    offset: Fraction            # input coordinate of unit 0's centre
    lo: tuple                   # field starts of units 0..P-1 (P = period); unit u+P = unit u moved by scale·P
    hi: tuple
    n: int | None = None        # units along this axis (None: no input size given)
    valid: tuple | None = None  # units [a, b] that read no padding and no missing unit, anywhere below

    def field(self, u: int) -> tuple[int, int]:
        q, r = divmod(u, len(self.lo))
        step = int(self.scale * len(self.lo))
        return self.lo[r] + q * step, self.hi[r] + q * step

    def _next(self, scale, offset, period, taps_of, n):
        """The map whose unit u reads this map's units ``taps_of(u)``: fields are their union."""
        lo, hi = [], []
        for u in range(period):
            fields = [self.field(v) for v in taps_of(u)]
            lo.append(min(f[0] for f in fields))
            hi.append(max(f[1] for f in fields))
        valid = None
        if n is not None and self.valid is not None:  # taps grow with u: bisect for the clean units
            (va, vb), units = self.valid, range(n)
            valid = (bisect.bisect_left(units, True, key=lambda u: min(taps_of(u)) >= va),
                     bisect.bisect_left(units, True, key=lambda u: max(taps_of(u)) > vb) - 1)
        return Axis(scale, offset, tuple(lo), tuple(hi), n, valid)

    def window(self, k, s, p, d=1, n=None):
        """Convolution / pooling: unit u reads units s·u − p + d·t, 0 ≤ t < k."""
        return self._next(self.scale * s, self.offset + self.scale * (Fraction(d * (k - 1), 2) - p),
                          len(self.lo) // math.gcd(len(self.lo), s),
                          lambda u: (s * u - p, s * u - p + d * (k - 1)), n)

    def transposed(self, k, s, p, d=1, n=None):
        """Transposed convolution: output y = s·x − p + d·t collects input x (Section 3.3)."""
        def taps(y):
            xs = [(y + p - d * t) // s for t in range(k) if (y + p - d * t) % s == 0]
            if not xs:
                raise GeometryError(f"transposed convolution k={k}, s={s}: output {y} reads no input "
                                    "(kernel smaller than stride leaves holes); its field is undefined")
            return xs
        return self._next(self.scale / s, self.offset + self.scale * (p - Fraction(d * (k - 1), 2)) / s,
                          len(self.lo) * s, taps, n)

    def crop(self, o, n=None):
        return self._next(self.scale, self.offset + self.scale * o, len(self.lo), lambda u: (u + o,), n)


def start_axes(input_shape=None):
    """The input's geometry (H axis, W axis): every unit is one pixel, its own field."""
    if isinstance(input_shape, int):
        input_shape = (input_shape, input_shape)
    h, w = (None, None) if input_shape is None else tuple(input_shape)[-2:]
    return tuple(Axis(Fraction(1), Fraction(0), (0,), (0,), n, None if n is None else (0, n - 1))
                 for n in (h, w))


def union(states, where):
    """Merge of maps read unit by unit (add, cat, mul): the fields' union, per axis."""
    out = []
    for axes in zip(*states):
        a0 = axes[0]
        if any(a.scale != a0.scale for a in axes):
            raise GeometryError(f"branches with different jumps {[str(a.scale) for a in axes]} meet at "
                                f"'{where}': their units do not correspond (a crop or resampling is missing)")
        sizes = {a.n for a in axes if a.n is not None}
        if len(sizes) > 1:
            raise GeometryError(f"maps of sizes {sorted(sizes)} meet at '{where}' for this input size")
        period = math.lcm(*(len(a.lo) for a in axes))
        lo = tuple(min(a.field(u)[0] for a in axes) for u in range(period))
        hi = tuple(max(a.field(u)[1] for a in axes) for u in range(period))
        valid = None if any(a.valid is None for a in axes) else \
            (max(a.valid[0] for a in axes), min(a.valid[1] for a in axes))
        out.append(Axis(a0.scale, a0.offset, lo, hi, sizes.pop() if sizes else None, valid))
    return tuple(out)


def branches_aligned(states) -> bool:
    return all(s[i].offset == states[0][i].offset for s in states for i in (0, 1))


# ------------------------------------------------------------------ layers
POINTWISE = {nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Sigmoid,
             nn.Tanh, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
             nn.BatchNorm2d, nn.LocalResponseNorm, nn.CrossMapLRN2d}
POINTWISE_FUNCS = {F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.dropout, F.dropout2d,
                    F.batch_norm, F.local_response_norm, torch.relu, torch.sigmoid, torch.tanh,
                    operator.neg, torch.clone}
WINDOWS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
KNOWN = (*WINDOWS, nn.ConvTranspose2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, Crop)
FLAT = ("flattens or mixes all positions: it has no spatial geometry. Analyse the convolutional part "
         "(model.features, or upto='…') or convolutionalize it first")


def register_pointwise(cls: type) -> type:
    """Declare a module type that acts on each position alone (same field as its input)."""
    POINTWISE.add(cls)
    return cls


def is_pointwise(m: nn.Module) -> bool:
    """True for a layer that acts on each position alone (its output has its input's geometry)."""
    return isinstance(m, tuple(POINTWISE))


def square(v, what: str) -> int:
    """The one value of a square kernel / stride / padding / dilation (an int or an equal pair)."""
    if isinstance(v, str):
        raise ValueError(f"{what} {v!r}: give it as a number")
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    if a != b:
        raise ValueError(f"{what} {v} is not the same in both directions: only square kernels, strides, "
                         "padding and dilation are handled here")
    return int(a)


def pick(v, axis):
    return v if isinstance(v, int) else v[axis]


def params(m, i):
    """Kernel, stride, (left) padding, dilation of a window or transposed-convolution layer on axis i."""
    k, s, d = pick(m.kernel_size, i), pick(m.stride, i), pick(getattr(m, "dilation", 1), i)
    p = {"same": d * (k - 1) // 2, "valid": 0}[m.padding] if isinstance(m.padding, str) else pick(m.padding, i)
    return k, s, p, d


def size_after(m, n, i, where):
    """Units along axis i after leaf layer ``m`` for ``n`` units in (PyTorch's arithmetic)."""
    if n is None or not isinstance(m, (*WINDOWS, nn.ConvTranspose2d)):
        return n
    k, s, p, d = params(m, i)
    if isinstance(m, nn.ConvTranspose2d):
        return (n - 1) * s - 2 * p + d * (k - 1) + pick(m.output_padding, i) + 1
    if m.padding == "same":
        return n
    span = n + 2 * p - d * (k - 1) - 1
    ceil = getattr(m, "ceil_mode", False)
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1  # PyTorch (and Caffe): the last window must start inside the input or left padding
    if span < 0 or out < 1:
        raise GeometryError(f"'{where}' gets a map of {n} units, too small for its kernel {k} "
                            f"(dilation {d}, padding {p}): no output unit")
    return out


def layer_step(m: nn.Module, states, where: str):
    """The geometry after leaf module ``m`` applied to ``states`` (its tensor inputs' geometries)."""
    st, name = states[0], type(m).__name__
    if isinstance(m, WINDOWS):
        return tuple(a.window(*params(m, i), n=size_after(m, a.n, i, where)) for i, a in enumerate(st))
    if isinstance(m, nn.ConvTranspose2d):
        return tuple(a.transposed(*params(m, i), n=size_after(m, a.n, i, where)) for i, a in enumerate(st))
    if isinstance(m, Crop):
        if len(states) < 2:
            raise GeometryError(f"Crop at '{where}' needs the map it is cropped like")
        for a, o, ref in zip(st, m.offset, states[1]):
            if a.n is not None and ref.n is not None and o + ref.n > a.n:
                raise GeometryError(f"Crop at '{where}' runs past the end: offset {o} + {ref.n} units > {a.n}")
        return tuple(a.crop(o, ref.n) for a, o, ref in zip(st, m.offset, states[1]))
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        out = []
        for i, a in enumerate(st):
            o = m.output_size if isinstance(m.output_size, int) else m.output_size[i]
            o = a.n if o is None else o
            if a.n is None or a.n % o:
                raise GeometryError(
                    f"{name} at '{where}' has input-dependent geometry (its windows depend on the input "
                    f"size{'' if a.n is None else f' {a.n} → {o}: uneven windows'}). Pass input_shape with "
                    f"a size that is a multiple of {o} (then it is exact pooling, an identity when equal), "
                    "or analyse the part before it (upto=…, or model.features)")
            out.append(a.window(a.n // o, a.n // o, 0, 1, o))
        return tuple(out)
    if isinstance(m, tuple(POINTWISE)):
        return st
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)) and m.dim in (1, -3):  # over channels
        return st
    what = (FLAT if isinstance(m, (nn.Linear, nn.Flatten)) else
            "is not a layer whose geometry fcnlib knows. If it acts on each position alone, declare it "
            f"with fcnlib.receptive_field.register_pointwise({name}); if it moves positions, build it "
            "from Conv2d / ConvTranspose2d / pooling / Crop, or analyse the part before it (upto='…')")
    raise GeometryError(f"{name} at '{where}' {what}")
