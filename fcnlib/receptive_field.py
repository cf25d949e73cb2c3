"""Receptive fields, jumps and coordinate maps of whole networks (Section 3; Table 1).

The course's one geometry. Every module that asks where a unit looks (convolutionalize, stitch,
models, classifiers, sampling) asks here. Public API (``path``: modules in order from the input,
``[]`` = the input; ``model``: any module torch.fx can trace; ``input_shape``: an int or (…, H, W))::

    geometry(path, axis=None) -> Geometry(rf, jump, centre)  # the last map's field size, jump, unit 0's centre
    output_size(path, input_size) -> int                   # units along H (PyTorch's floor / ceil_mode rules)
    min_input_size(path) -> int                            # the smallest input side giving one unit
    coord_map(path, axis=None) -> (scale, offset)          # input coordinate = scale · unit + offset (Fractions)
    crop_offset(bottom_path, reference_path) -> int        # Caffe's Crop offset: bottom[o + i] ~ reference[i]
    misaligned_sizes(crops, sizes) -> list[int]            # input sizes at which some crop does not fit
    receptive_fields(model, input_shape=None, upto=None, axis=0) -> list[LayerField]   # per node of the graph
    coord_map_between(model, node_a, node_b, input_shape=None, axis=None) -> (scale, offset)  # a = scale·b + offset
    crop_offset_between(model, bottom, reference, input_shape=None) -> int
    compose((k', s'), (k, s)) -> (k' + (k−1)s', s s')      # Section 3's rule
    Crop(offset)(x, like)                                  # the crop layer: x[..., o:o+h, o:o+w], (h, w) = like's
    register_pointwise(cls); GeometryError(ValueError); trace(model) -> fx.GraphModule

One convention throughout, Caffe's (coord_map.py): *input coordinate = jump · u + centre*, where u
is a unit's index and the coordinate is the centre of its window (a k-window's first index +
(k − 1)/2). The field of unit u is the interval of input pixels [lo, hi] it can depend on (padding
included: lo is negative where it starts in the padding). What each layer does to them is
:mod:`fcnlib.field_algebra`; this module applies it to every node of a module graph traced with
torch.fx, so skips and inception branches come out right:

- **merges** (add, cat along channels, mul): unit u of the result reads unit u of every branch, so
  its field is the *union* — the extent [min lo, max hi]. Branches with different jumps cannot
  meet (error); branches whose centres differ (an unaligned skip) are flagged ``aligned=False``
  and keep the first branch's coordinate map.
- After an upsampling the fields move in steps while the coordinates move linearly: a unit's field
  is centred on its coordinate only on average over a period (``rf`` is the largest field, ``rf_min``
  the smallest).

``crop_offset(bottom, reference)`` is the shift Caffe's Crop layer gets from coord_map: the index
in ``bottom`` of the unit that sits where ``reference``'s unit 0 sits. Unknown layers, flattening
and input-dependent pooling raise :class:`GeometryError` with what to do; nothing is guessed.
Adaptive pooling is exact when the input size is given (``input_shape``) and is a multiple of its
output size (pooling with kernel = stride = ratio; an identity when equal), an error otherwise.
Subclasses of the known layers (a Conv2d computed as im2col, say) keep their declared geometry.

The same fields measured by gradients instead (an independent check of this module) are
:mod:`fcnlib.rf_check`. (Why about 400 lines: the walk and the two ways of asking it — a graph's
nodes, a chain's end — are one idea, where a unit looks; the per-layer rules already live apart.)
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import torch
from torch import fx, nn

from .field_algebra import (FLAT, KNOWN, POINTWISE, POINTWISE_FUNCS, WINDOWS, Axis, Crop,  # noqa: F401
                            GeometryError, branches_aligned, compose, layer_step, register_pointwise, size_after,
                            start_axes, union)

_MERGE_FUNCS = {operator.add, operator.iadd, operator.sub, operator.mul, operator.truediv, torch.add,
                torch.sub, torch.mul, torch.cat}
_MERGE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "double",
                  "to", "detach", "add", "add_", "mul", "mul_", "sub", "div"}  # a union of one is a no-op
_SCALAR_METHODS = {"size", "dim", "numel"}

# ------------------------------------------------------------------ the graph walk
class Tracer(fx.Tracer):
    """Layers whose geometry is known are single nodes, subclasses included (a Conv2d subclass with
    its own forward, e.g. fcnlib.fast.FCConv2d, is taken to be the convolution it declares)."""

    def is_leaf_module(self, m, qualname):
        return isinstance(m, KNOWN + tuple(POINTWISE)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """The model's module graph (torch.fx) as this module sees it: known layers are single nodes."""
    if isinstance(model, fx.GraphModule):
        return model
    return fx.GraphModule(model, Tracer().trace(model), type(model).__name__)


def _graph(model: nn.Module) -> fx.Graph:
    """The traced graph alone (its modules are looked up in ``model``): cheaper than :func:`trace`."""
    return model.graph if isinstance(model, fx.GraphModule) else Tracer().trace(model)


def find_node(graph, name):
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
            states[node] = layer_step(model.get_submodule(f), st, where)
        elif f is operator.getitem:
            states[node] = _slice_crop(node, st, vals, where)
        elif f in _MERGE_FUNCS or node.op == "call_method" and f in _MERGE_METHODS:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if f is torch.cat and dim not in (1, -3):
                raise GeometryError(f"concatenation along dim {dim} at '{where}': only channels (dim 1)")
            states[node] = union(st, where)
            aligned[node] = branches_aligned(st)
        elif f in POINTWISE_FUNCS:
            states[node] = st[0]
        else:
            what = getattr(f, "__name__", str(f))
            raise GeometryError(f"{what} at '{where}' " + (
                FLAT if what in ("flatten", "view", "reshape", "linear") else
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
    geometry: Axis

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
    return field_rows(model, input_shape, upto)[axis]


def field_rows(model, input_shape=None, upto=None) -> tuple[list[LayerField], list[LayerField]]:
    """The rows of :func:`receptive_fields` for both axes, from one walk of the graph."""
    graph = _graph(model)
    keep = _ancestors([find_node(graph, upto)]) if upto else None
    states, aligned = _walk(model, graph, start_axes(input_shape), keep)
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
    na, nb = find_node(graph, node_a), find_node(graph, node_b)
    states, _ = _walk(model, graph, start_axes(input_shape), _ancestors([na, nb]))
    maps = [_between(states[na][i], states[nb][i]) for i in (0, 1)]
    return _one(maps, axis, f"coord map {node_a} ← {node_b}")


def crop_offset_between(model: nn.Module, bottom: str, reference: str, input_shape=None) -> int:
    """The offset at which node ``bottom`` must be cropped to align with node ``reference``."""
    scale, offset = coord_map_between(model, bottom, reference, input_shape)
    return _crop(scale, offset, f"crop {bottom} like {reference}")


# ------------------------------------------------------------------ public API: chains
def _chain(path: Sequence[nn.Module], input_size=None):
    st = start_axes(input_size)
    for i, m in enumerate(leaves(_as_path(path))):  # plain Sequentials opened: no tracing needed
        if not Tracer().is_leaf_module(m, ""):  # a container or a custom module: walk its graph
            graph = _graph(m)
            states, _ = _walk(m, graph, st)
            st = states[next(n for n in graph.nodes if n.op == "output").args[0]]
        else:
            st = layer_step(m, [st], f"path[{i}] ({type(m).__name__})")
    return st


@dataclass(frozen=True)
class Geometry:
    """Where the units of a map look along one axis (Section 3): unit u's field is the ``rf`` input
    pixels from ``jump · u + start``, centred on ``jump · u + centre``. ``start`` is negative where
    unit 0's field begins in the padding (−start is then the padding counted in input pixels)."""
    rf: int                    # field size, input pixels
    jump: int                  # input pixels between neighbouring units (the net's total stride)
    centre: Fraction           # input coordinate of unit 0's centre

    def __str__(self):
        return (f"field {self.rf} px, jump {self.jump} px, unit 0 centred at {float(self.centre):g} px "
                f"(its field starts at {self.start})")

    @property
    def start(self) -> int:
        """First input pixel of unit 0's field."""
        return int(self.centre - Fraction(self.rf - 1, 2))

    def field(self, u: int) -> tuple[int, int]:
        """Field [lo, hi] (inclusive, input pixels) of unit ``u``."""
        lo = self.jump * u + self.start
        return lo, lo + self.rf - 1


def _as_path(path) -> Sequence[nn.Module]:
    return path if isinstance(path, (nn.Sequential, list, tuple)) else [path]


def geometry(path, axis=None) -> Geometry:
    """Field size, jump and centre of the map at the end of ``path`` (modules in order from the input,
    or one module: a Sequential, or any module fx can trace). Square nets unless ``axis`` is given.
    Maps after an upsampling have fields that change from unit to unit: read them with
    :func:`receptive_fields` instead."""
    per_axis = []
    for a in _chain(_as_path(path)):
        if len(a.lo) != 1 or a.scale.denominator != 1:
            raise GeometryError(f"the map has a fractional jump ({a.scale}) or fields that vary from unit to "
                                "unit (after an upsampling): use receptive_fields for its fields")
        per_axis.append(Geometry(a.hi[0] - a.lo[0] + 1, int(a.scale), a.offset))
    return _one(per_axis, axis, "geometry")


def min_input_size(path, limit: int = 10_000) -> int:
    """The smallest input side for which ``path`` gives at least one unit."""
    path, cache = _as_path(path), {}
    for n in range(1, limit):
        try:
            if output_size(path, n, cache) >= 1:
                return n
        except GeometryError:
            continue
    raise GeometryError(f"no input up to {limit} px gives an output unit")


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


def leaves(path):
    """The modules of ``path`` with plain ``nn.Sequential`` containers opened, in order."""
    for m in path:
        yield from (leaves(m) if type(m) is nn.Sequential else (m,))


def output_size(path: Sequence[nn.Module], input_size, _cache: dict | None = None) -> int:
    """Units along H at the end of ``path`` for an input of ``input_size`` (int or (H, W))
    (PyTorch's floor / ceil_mode arithmetic; GeometryError where a map would be empty)."""
    path = _as_path(path)
    layers = list(leaves(path))
    if not all(isinstance(m, (*POINTWISE, *WINDOWS, nn.ConvTranspose2d)) for m in layers):
        return _chain(path, input_size)[0].n
    n = input_size if isinstance(input_size, int) else tuple(input_size)[-2]
    cache = {} if _cache is None else _cache  # (layer, n in) → n out, shared by paths with a common trunk
    for i, m in enumerate(layers):  # sizes only: fast enough to sweep a thousand input sizes
        key = (id(m), n)
        if key not in cache:
            cache[key] = size_after(m, n, 0, f"path[{i}] ({type(m).__name__})")
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
