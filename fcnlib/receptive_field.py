"""Receptive fields, jumps and coordinate maps of convolutional networks (Section 3; Table 1).

Public API (``path``: modules in order from the input, ``[]`` = the input; ``model``: any module
torch.fx can trace; ``input_shape``: an int or (…, H, W))::

    crop_offset(bottom_path, reference_path) -> int        # Caffe's Crop offset: bottom[o + i] ~ reference[i]
    coord_map(path, axis=None) -> (scale, offset)          # input coordinate = scale · unit + offset (Fractions)
    output_size(path, input_size) -> int                   # units along H (PyTorch's floor / ceil_mode rules)
    misaligned_sizes(crops, sizes) -> list[int]            # input sizes at which some crop does not fit
    receptive_fields(model, input_shape=None, upto=None, axis=0) -> list[LayerField]   # per node of the graph
    coord_map_between(model, node_a, node_b, input_shape=None, axis=None) -> (scale, offset)  # a = scale·b + offset
    crop_offset_between(model, bottom, reference, input_shape=None) -> int
    compose((k', s'), (k, s)) -> (k' + (k−1)s', s s')      # Section 3's rule
    Crop(offset)(x, like)                                  # the crop layer: x[..., o:o+h, o:o+w], (h, w) = like's
    register_pointwise(cls); GeometryError(ValueError); trace(model) -> fx.GraphModule

The same fields measured by gradients instead (an independent check of this module) are
:mod:`fcnlib.rf_check`: ``linear_twin``, ``gradient_support``, ``support_box``, ``empirical_check``.

Section 3: a layer with kernel k and stride s after a stack with kernel k' and stride s' gives
f_ks ∘ g_k's' = (f ∘ g)_{k' + (k−1)s', s s'} — the field grows by (k − 1) times the jump so far and
the jumps multiply (:func:`compose`). This module applies that rule to every node of a real module
graph (traced with torch.fx, so skips and inception branches come out right), per spatial axis:

- **field** of unit u: the interval [lo, hi] of input pixels it can depend on (pixels outside the
  image, i.e. in the padding, included). After a transposed convolution the field is not the same
  for every unit: it repeats with a period, which is kept exactly (``rf`` is the largest, ``rf_min``
  the smallest). Dilation leaves holes inside the interval; the interval is its extent.
- **jump** (``scale``): input pixels between neighbouring units (a fraction after upsampling).
- **coordinate map**, Caffe's convention (coord_map.py): *input coordinate = scale · u + offset*,
  where u is a unit's index and the input coordinate is the centre of its kernel window (centre of
  a k-window = its first index + (k−1)/2). ``offset`` (the "centre" column) is unit 0's centre.
  After an upsampling the fields move in steps while the coordinates move linearly: a unit's
  field is centred on its coordinate only on average over a period.
- **merges** (add, cat along channels, mul): unit u of the result reads unit u of every branch, so
  its field is the *union* — the extent [min lo, max hi]. Branches with different jumps cannot
  meet (error); branches whose offsets differ (an unaligned skip) are flagged ``aligned=False``
  and keep the first branch's coordinate map.

``crop_offset(bottom, reference)`` is the shift Caffe's Crop layer gets from coord_map: the index
in ``bottom`` of the unit that sits where ``reference``'s unit 0 sits. Unknown layers, flattening
and input-dependent pooling raise :class:`GeometryError` with what to do; nothing is guessed.
Adaptive pooling is exact when the input size is given (``input_shape``) and is a multiple of its
output size (pooling with kernel = stride = ratio; an identity when equal), an error otherwise.
Subclasses of the known layers (a Conv2d computed as im2col, say) keep their declared geometry.
"""
from __future__ import annotations

import bisect
import math
import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn


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
class _Axis:
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
        return _Axis(scale, offset, tuple(lo), tuple(hi), n, valid)

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


def _start(input_shape=None):
    """The input's geometry (H axis, W axis): every unit is one pixel, its own field."""
    if isinstance(input_shape, int):
        input_shape = (input_shape, input_shape)
    h, w = (None, None) if input_shape is None else tuple(input_shape)[-2:]
    return tuple(_Axis(Fraction(1), Fraction(0), (0,), (0,), n, None if n is None else (0, n - 1))
                 for n in (h, w))


def _union(states, where):
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
        out.append(_Axis(a0.scale, a0.offset, lo, hi, sizes.pop() if sizes else None, valid))
    return tuple(out)


def _aligned(states) -> bool:
    return all(s[i].offset == states[0][i].offset for s in states for i in (0, 1))


# ------------------------------------------------------------------ layers
POINTWISE = {nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Sigmoid,
             nn.Tanh, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
             nn.BatchNorm2d, nn.LocalResponseNorm, nn.CrossMapLRN2d}
_POINTWISE_FUNCS = {F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.dropout, F.dropout2d,
                    F.batch_norm, F.local_response_norm, torch.relu, torch.sigmoid, torch.tanh,
                    operator.neg, torch.clone}
_MERGE_FUNCS = {operator.add, operator.iadd, operator.sub, operator.mul, operator.truediv, torch.add,
                torch.sub, torch.mul, torch.cat}
_MERGE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "double",
                  "to", "detach", "add", "add_", "mul", "mul_", "sub", "div"}  # a union of one is a no-op
_SCALAR_METHODS = {"size", "dim", "numel"}
_WINDOWS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_KNOWN = (*_WINDOWS, nn.ConvTranspose2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, Crop)
_FLAT = ("flattens or mixes all positions: it has no spatial geometry. Analyse the convolutional part "
         "(model.features, or upto='…') or convolutionalize it first")


def register_pointwise(cls: type) -> type:
    """Declare a module type that acts on each position alone (same field as its input)."""
    POINTWISE.add(cls)
    return cls


def _pick(v, axis):
    return v if isinstance(v, int) else v[axis]


def _params(m, i):
    """Kernel, stride, (left) padding, dilation of a window or transposed-convolution layer on axis i."""
    k, s, d = _pick(m.kernel_size, i), _pick(m.stride, i), _pick(getattr(m, "dilation", 1), i)
    p = {"same": d * (k - 1) // 2, "valid": 0}[m.padding] if isinstance(m.padding, str) else _pick(m.padding, i)
    return k, s, p, d


def _size(m, n, i, where):
    """Units along axis i after leaf layer ``m`` for ``n`` units in (PyTorch's arithmetic)."""
    if n is None or not isinstance(m, (*_WINDOWS, nn.ConvTranspose2d)):
        return n
    k, s, p, d = _params(m, i)
    if isinstance(m, nn.ConvTranspose2d):
        return (n - 1) * s - 2 * p + d * (k - 1) + _pick(m.output_padding, i) + 1
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


def _layer(m: nn.Module, states, where: str):
    """The geometry after leaf module ``m`` applied to ``states`` (its tensor inputs' geometries)."""
    st, name = states[0], type(m).__name__
    if isinstance(m, _WINDOWS):
        return tuple(a.window(*_params(m, i), n=_size(m, a.n, i, where)) for i, a in enumerate(st))
    if isinstance(m, nn.ConvTranspose2d):
        return tuple(a.transposed(*_params(m, i), n=_size(m, a.n, i, where)) for i, a in enumerate(st))
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
    what = (_FLAT if isinstance(m, (nn.Linear, nn.Flatten)) else
            "is not a layer whose geometry fcnlib knows. If it acts on each position alone, declare it "
            f"with fcnlib.receptive_field.register_pointwise({name}); if it moves positions, build it "
            "from Conv2d / ConvTranspose2d / pooling / Crop, or analyse the part before it (upto='…')")
    raise GeometryError(f"{name} at '{where}' {what}")


# ------------------------------------------------------------------ the graph walk
class _Tracer(fx.Tracer):
    """Layers whose geometry is known are single nodes, subclasses included (a Conv2d subclass with
    its own forward, e.g. convolutionalize's FCConv2d, is taken to be the convolution it declares)."""

    def is_leaf_module(self, m, qualname):
        return isinstance(m, _KNOWN + tuple(POINTWISE)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """The model's module graph (torch.fx) as this module sees it: known layers are single nodes."""
    if isinstance(model, fx.GraphModule):
        return model
    return fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)


def _graph(model: nn.Module) -> fx.Graph:
    """The traced graph alone (its modules are looked up in ``model``): cheaper than :func:`trace`."""
    return model.graph if isinstance(model, fx.GraphModule) else _Tracer().trace(model)


def _find(graph, name):
    """A node by its fx name (``features_16``) or the path of the module it calls (``features.16``)."""
    hits = [n for n in graph.nodes if n.name == name] or \
        [n for n in graph.nodes if n.op == "call_module" and n.target == name]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise KeyError(f"module {name!r} is called {len(hits)} times: name one node of {[h.name for h in hits]}")
    raise KeyError(f"no node {name!r}; nodes are {[n.name for n in graph.nodes if n.op != 'output']}")


def _ancestors(nodes):
    seen, todo = set(), list(nodes)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(n.all_input_nodes)
    return seen


def _slice_crop(node, states, vals, where):
    """``x[..., a:b, c:d]`` with constant starts: a crop (slices of N and C leave the geometry)."""
    idx = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    if Ellipsis in idx:
        e = idx.index(Ellipsis)
        idx = idx[:e] + (slice(None),) * (5 - len(idx)) + idx[e + 1:]
    idx = idx + (slice(None),) * (4 - len(idx))
    if len(idx) != 4 or not all(isinstance(i, slice) for i in idx):
        raise GeometryError(f"indexing at '{where}' ({idx}) is not a crop of H, W by slices")
    out = []
    for a, sl in zip(states[0], idx[2:4]):
        start, stop = (vals.get(v) if isinstance(v, fx.Node) else v for v in (sl.start, sl.stop))
        if sl.step not in (None, 1) or start is None and sl.start is not None:
            raise GeometryError(f"slice at '{where}' is not a crop with a constant start: use "
                                "fcnlib.receptive_field.Crop with an offset from crop_offset")
        start = start or 0
        if start < 0:
            if a.n is None:
                raise GeometryError(f"slice at '{where}' counts from the end: pass input_shape")
            start += a.n
        n = None if a.n is None or stop is None and sl.stop is not None else len(range(a.n)[start:stop])
        out.append(a.crop(start, n))
    return tuple(out)


def _scalar(node, vals, states):
    """Value of a non-tensor node (a size, or arithmetic on sizes); None where unknown."""
    f, args = node.target, node.args
    if node.op == "call_method" and f == "size" or node.op == "call_function" and f is getattr:
        if node.op == "call_function" and args[1] != "shape":
            return None
        dims = (None, None) + tuple(a.n for a in states[args[0]])
        dim = args[1] if node.op == "call_method" and len(args) > 1 else None
        return dims if dim is None else dims[dim]
    a = [vals.get(x) if isinstance(x, fx.Node) else x for x in args]
    try:
        return f(*a) if node.op == "call_function" else None
    except TypeError:
        return None


def _walk(model, graph, start, keep=None):
    """Geometry (H axis, W axis) of every tensor node of ``graph`` (those in ``keep`` if given)."""
    states, vals, aligned = {}, {}, {}
    for node in graph.nodes:
        if keep is not None and node not in keep or node.op in ("output", "get_attr"):
            continue
        if node.op == "placeholder":
            states[node] = start
            continue
        ins = [a for a in node.all_input_nodes if a in states]
        where, f = (node.target if node.op == "call_module" else node.name), node.target
        if not ins or node.op == "call_method" and f in _SCALAR_METHODS or f is getattr:
            vals[node] = _scalar(node, vals, states)
            continue
        st = [states[a] for a in ins]
        if node.op == "call_module":
            states[node] = _layer(model.get_submodule(f), st, where)
        elif f is operator.getitem:
            states[node] = _slice_crop(node, st, vals, where)
        elif f in _MERGE_FUNCS or node.op == "call_method" and f in _MERGE_METHODS:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if f is torch.cat and dim not in (1, -3):
                raise GeometryError(f"concatenation along dim {dim} at '{where}': only channels (dim 1)")
            states[node] = _union(st, where)
            aligned[node] = _aligned(st)
        elif f in _POINTWISE_FUNCS:
            states[node] = st[0]
        else:
            what = getattr(f, "__name__", str(f))
            raise GeometryError(f"{what} at '{where}' " + (
                _FLAT if what in ("flatten", "view", "reshape", "linear") else
                "is not an operation whose geometry fcnlib knows: use modules (Conv2d, pooling, "
                "ConvTranspose2d, Crop) or analyse the part before it (upto='…')"))
    return states, aligned


# ------------------------------------------------------------------ public API: graphs
@dataclass(frozen=True)
class LayerField:
    """One node's geometry along one axis (input pixel coordinates)."""
    node: str               # the fx node's name (features_16)
    name: str               # the module's path (features.16), else the node's name
    op: str                 # the module's type, or the function's name
    rf: int                 # field size (the largest over units)
    rf_min: int             # the smallest (differs after an upsampling whose stride does not divide its kernel)
    jump: Fraction          # input pixels between neighbouring units (= coord-map scale)
    centre: Fraction        # input coordinate of unit 0's centre (= coord-map offset)
    first: tuple[int, int]  # field [lo, hi] of unit 0 (negative: in the padding)
    size: int | None        # units along the axis for the given input size
    aligned: bool           # False where branches meet with different offsets
    geometry: _Axis

    def field(self, u: int) -> tuple[int, int]:
        """Field [lo, hi] (inclusive, input pixels) of unit ``u``."""
        return self.geometry.field(u)


def _op_name(model, node):
    if node.op == "call_module":
        return type(model.get_submodule(node.target)).__name__
    return "input" if node.op == "placeholder" else getattr(node.target, "__name__", str(node.target))


def receptive_fields(model: nn.Module, input_shape=None, upto: str | None = None,
                     axis: int = 0) -> list[LayerField]:
    """Per node of ``model``'s graph (in graph order): field size, jump, centre, first field, size.

    ``input_shape``: (…, H, W) or an int; needed for sizes and adaptive pooling. ``upto``: a node
    name or module path; only it and its ancestors are analysed. ``axis``: 0 (H) or 1 (W).
    """
    return _fields(model, input_shape, upto)[axis]


def _fields(model, input_shape=None, upto=None) -> tuple[list[LayerField], list[LayerField]]:
    """The rows of :func:`receptive_fields` for both axes, from one walk of the graph."""
    graph = _graph(model)
    keep = _ancestors([_find(graph, upto)]) if upto else None
    states, aligned = _walk(model, graph, _start(input_shape), keep)
    rows = ([], [])
    for node, st in states.items():
        name = node.target if node.op in ("call_module", "placeholder") else node.name
        for a, out in zip(st, rows):
            sizes = [hi - lo + 1 for lo, hi in zip(a.lo, a.hi)]
            out.append(LayerField(node.name, name, _op_name(model, node), max(sizes), min(sizes), a.scale,
                                  a.offset, a.field(0), a.n, aligned.get(node, True), a))
    return rows


def _one(values, axis, what):
    if axis is not None:
        return values[axis]
    if values[0] != values[1]:
        raise GeometryError(f"{what} differs between H and W ({values[0]} vs {values[1]}): pass axis=0 or 1")
    return values[0]


def _between(sa, sb):
    """Coordinates of map b in map a's frame: a = scale · b + offset (both maps in the input frame)."""
    return sb.scale / sa.scale, (sb.offset - sa.offset) / sa.scale


def _crop(scale, offset, what):
    if scale != 1:
        raise GeometryError(f"{what}: the maps have different jumps (scale {scale}); crop needs equal ones")
    if offset.denominator != 1:
        raise GeometryError(f"{what}: non-integer offset {offset}: the maps' grids do not coincide")
    if offset < 0:
        raise GeometryError(f"{what}: negative offset {offset}: the map to crop starts inside the "
                            "reference, it would have to be padded (this is why FCN pads conv1 by 100)")
    return int(offset)


def coord_map_between(model: nn.Module, node_a: str, node_b: str, input_shape=None, axis=None):
    """``(scale, offset)`` with coordinate in ``node_a`` = scale · coordinate in ``node_b`` + offset."""
    graph = _graph(model)
    na, nb = _find(graph, node_a), _find(graph, node_b)
    states, _ = _walk(model, graph, _start(input_shape), _ancestors([na, nb]))
    maps = [_between(states[na][i], states[nb][i]) for i in (0, 1)]
    return _one(maps, axis, f"coord map {node_a} ← {node_b}")


def crop_offset_between(model: nn.Module, bottom: str, reference: str, input_shape=None) -> int:
    """The offset at which node ``bottom`` must be cropped to align with node ``reference``."""
    scale, offset = coord_map_between(model, bottom, reference, input_shape)
    return _crop(scale, offset, f"crop {bottom} like {reference}")


# ------------------------------------------------------------------ public API: chains
def _chain(path: Sequence[nn.Module], input_size=None):
    st = _start(input_size)
    for i, m in enumerate(path):
        if not _Tracer().is_leaf_module(m, ""):  # a container or a custom module: walk its graph
            graph = _graph(m)
            states, _ = _walk(m, graph, st)
            st = states[next(n for n in graph.nodes if n.op == "output").args[0]]
        else:
            st = _layer(m, [st], f"path[{i}] ({type(m).__name__})")
    return st


def coord_map(path: Sequence[nn.Module], axis=None) -> tuple[Fraction, Fraction]:
    """``(scale, offset)`` of the map at the end of ``path`` (modules in order from the input):
    input coordinate = scale · unit index + offset (Caffe's convention; centres of windows)."""
    return _one([(a.scale, a.offset) for a in _chain(path)], axis, "coord map")


def crop_offset(bottom_path: Sequence[nn.Module], reference_path: Sequence[nn.Module]) -> int:
    """Offset at which the map at the end of ``bottom_path`` is cropped to align with the map at the
    end of ``reference_path`` (both paths start at the same input; ``[]`` is the input itself), as
    Caffe's ``coord_map.crop``: ``bottom[o + i]`` sits where ``reference[i]`` sits.
    Raises :class:`GeometryError` for different jumps, a non-integer or a negative offset."""
    b, r = _chain(bottom_path), _chain(reference_path)
    maps = [_between(b[i], r[i]) for i in (0, 1)]
    return _crop(*_one(maps, None, "crop"), "crop")


def _leaves(path):
    for m in path:
        yield from (_leaves(m) if type(m) is nn.Sequential else (m,))


def output_size(path: Sequence[nn.Module], input_size, _cache: dict | None = None) -> int:
    """Units along H at the end of ``path`` for an input of ``input_size`` (int or (H, W))
    (PyTorch's floor / ceil_mode arithmetic; GeometryError where a map would be empty)."""
    leaves = list(_leaves(path))
    if not all(isinstance(m, (*POINTWISE, *_WINDOWS, nn.ConvTranspose2d)) for m in leaves):
        return _chain(path, input_size)[0].n
    n = input_size if isinstance(input_size, int) else tuple(input_size)[-2]
    cache = {} if _cache is None else _cache  # (layer, n in) → n out, shared by paths with a common trunk
    for i, m in enumerate(leaves):  # sizes only: fast enough to sweep a thousand input sizes
        key = (id(m), n)
        if key not in cache:
            cache[key] = _size(m, n, 0, f"path[{i}] ({type(m).__name__})")
        n = cache[key]
    return n


def misaligned_sizes(crops, sizes) -> list[int]:
    """The input sizes (of ``sizes``) at which some crop of ``crops`` does not fit.

    ``crops``: ``(bottom_path, reference_path)`` pairs, as for :func:`crop_offset`. At input size n a
    crop fits when every map on both paths is non-empty and offset + the reference's size ≤ the
    bottom's size; otherwise the fused maps' sizes would differ (a skip) or the score map would not
    cover the image (the final crop). The offsets do not depend on n; the sizes do.
    """
    offsets = [crop_offset(b, r) for b, r in crops]
    bad, cache = [], {}
    for n in sizes:
        try:
            ok = all(o + output_size(r, n, cache) <= output_size(b, n, cache) for o, (b, r) in zip(offsets, crops))
        except GeometryError:
            ok = False
        if not ok:
            bad.append(n)
    return bad
