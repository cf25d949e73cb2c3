"""The receptive fields of :mod:`fcnlib.receptive_field`, measured instead of computed (Section 3).

A unit's receptive field is the set of input pixels its value can depend on: the support of its
gradient with respect to the input. ``linear_twin(model)`` replaces every layer by a one-channel
linear one with positive weights (max pooling by average pooling unless ``keep_max``), so that no
weight or ReLU can hide a dependence; ``gradient_support`` back-propagates one unit of the twin and
returns the pixels with a non-zero gradient; ``empirical_check`` compares those supports with the
fields the graph walk computes, node by node.

    linear_twin(model, keep_max=False) -> fx.GraphModule
    gradient_support(twin, node, unit, input_shape, seed=0) -> (H, W) bool
    support_box(mask) -> ((row_lo, row_hi), (col_lo, col_hi))
    empirical_check(model, input_shape, nodes=None, per_layer=3, keep_max=False, seed=0) -> [dict]
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch
from torch import fx, nn

from .field_algebra import POINTWISE, POINTWISE_FUNCS, GeometryError, pick
from .receptive_field import LayerField, Tracer, field_rows, find_node


def _identity(x, *args, **kwargs):
    return x


def _cat_as_sum(tensors, dim=0):
    return sum(tensors[1:], tensors[0])  # the twin has one channel per branch: union of supports


def _twin_layer(m: nn.Module, keep_max: bool) -> nn.Module:
    if isinstance(m, nn.Conv2d):
        new = nn.Conv2d(1, 1, m.kernel_size, m.stride, m.padding, m.dilation, bias=False,
                        padding_mode=m.padding_mode)
    elif isinstance(m, nn.ConvTranspose2d):
        new = nn.ConvTranspose2d(1, 1, m.kernel_size, m.stride, m.padding, m.output_padding,
                                 bias=False, dilation=m.dilation)
    elif isinstance(m, nn.MaxPool2d) and not keep_max:
        if pick(m.dilation, 0) != 1 or pick(m.dilation, 1) != 1:
            raise GeometryError("a dilated MaxPool2d has no average-pooling twin")
        return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode)
    elif isinstance(m, nn.AdaptiveMaxPool2d) and not keep_max:
        return nn.AdaptiveAvgPool2d(m.output_size)
    elif isinstance(m, (*POINTWISE, nn.Softmax, nn.LogSoftmax)):
        return nn.Identity()
    else:
        return m  # pooling and Crop: no weights
    nn.init.constant_(new.weight, 1.0 / new.weight[0, 0].numel())
    return new


def linear_twin(model: nn.Module, keep_max: bool = False) -> fx.GraphModule:
    """The model's graph made linear with the same geometry, for the gradient-support check:
    one channel, every (transposed) convolution's weights positive (1/k²), activations, dropout and
    normalizations → identity, max pooling → average pooling (``keep_max=True`` keeps it), channel
    concatenation → sum, float64, eval mode. With positive weights nothing cancels, so the input
    gradient of one output unit is nonzero exactly on the pixels it is connected to: its field
    (clipped to the image; with holes where dilation skips pixels). Max pooling passes the gradient
    to one input per window only (the argmax), which is why a max-pooling net's support is a sparse
    subset of the theoretical field. Node names are those of :func:`trace` of ``model``."""
    gm = fx.GraphModule(model, Tracer().trace(model), type(model).__name__ + "Twin")
    for node in gm.graph.nodes:
        if node.op == "call_module":
            *parent, field = node.target.split(".")
            setattr(gm.get_submodule(".".join(parent)), field,
                    _twin_layer(gm.get_submodule(node.target), keep_max))
        elif node.op == "call_function" and node.target in POINTWISE_FUNCS:
            node.target = _identity
        elif node.op == "call_function" and node.target in (torch.cat, operator.sub, torch.sub):
            node.target = {torch.cat: _cat_as_sum, operator.sub: operator.add, torch.sub: torch.add}[node.target]
        elif node.op == "call_method" and node.target in ("relu", "relu_", "sigmoid", "tanh", "sub"):
            node.op, node.target = "call_function", (operator.add if node.target == "sub" else _identity)
    gm.recompile()
    return gm.double().eval()


def _activations(twin: fx.GraphModule, input_shape, seed=0):
    """Input (1, 1, H, W) float64 requiring grad (positive values) and every node's output."""
    h, w = tuple(input_shape)[-2:] if not isinstance(input_shape, int) else (input_shape,) * 2
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(1, 1, h, w, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    interp = fx.Interpreter(twin, garbage_collect_values=False)
    interp.run(x)
    return x, {n.name: v for n, v in interp.env.items() if isinstance(v, torch.Tensor)}


def gradient_support(twin: fx.GraphModule, node: str, unit: tuple[int, int], input_shape,
                     seed: int = 0) -> torch.Tensor:
    """Boolean (H, W) mask of the input pixels where d(node[unit]) / d(input) is nonzero."""
    x, acts = _activations(twin, input_shape, seed)
    (grad,) = torch.autograd.grad(acts[find_node(twin.graph, node).name][0, :, unit[0], unit[1]].sum(), x)
    return grad[0, 0] != 0


def support_box(mask: torch.Tensor):
    """((lo_h, hi_h), (lo_w, hi_w)) bounding the True pixels of a (H, W) mask; None if empty."""
    if not mask.any():
        return None
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))


def _interior_units(row: LayerField, per_layer: int) -> list[int]:
    """Up to ``per_layer`` units that read no padding at any layer (so their field lies inside the
    image), spread from the first to the last; after an upsampling also a run of consecutive ones
    (the field repeats with a period)."""
    if row.geometry.valid is None or row.geometry.valid[0] > row.geometry.valid[1]:
        return []
    units = range(row.geometry.valid[0], row.geometry.valid[1] + 1)
    spread = {units[round(i * (len(units) - 1) / max(1, per_layer - 1))] for i in range(per_layer)}
    mid, period = len(units) // 2, len(row.geometry.lo)
    return sorted(spread | set(units[mid:mid + min(period, per_layer) * (period > 1)]))


def empirical_check(model: nn.Module, input_shape, nodes: Sequence[str] | None = None,
                    per_layer: int = 3, keep_max: bool = False, seed: int = 0) -> list[dict]:
    """Theory against the gradient support of :func:`linear_twin`, for the units that read no
    padding at any layer (near the border, padding's zeros cut the support to less than the field
    clipped to the image — also inside the image after a crop). Checks every node that changes the
    geometry (not activations or dropout, whose geometry is their input's), or those named in
    ``nodes``. One forward pass; one gradient per unit.

    Returns one dict per checked unit: node, op, unit, theory and empirical boxes, ``match`` (boxes
    equal), ``inside`` (support within the field), support and field areas in pixels.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one-channel maps: threads cost more than they save (5× here)
    try:
        return _empirical_check(model, input_shape, nodes, per_layer, keep_max, seed)
    finally:
        torch.set_num_threads(threads)


def _empirical_check(model, input_shape, nodes, per_layer, keep_max, seed):
    h, w = tuple(input_shape)[-2:] if not isinstance(input_shape, int) else (input_shape,) * 2
    rows_h, rows_w = field_rows(model, (h, w))
    rows_w = {r.node: r for r in rows_w}
    twin = linear_twin(model, keep_max)
    x, acts = _activations(twin, (h, w), seed)
    if nodes is None:
        geo = {r.node: r.geometry for r in rows_w.values()}
        wanted = {n.name for n in twin.graph.nodes if n.name in geo
                  and not any(geo.get(a.name) is geo[n.name] for a in n.all_input_nodes)}
    else:
        wanted = {find_node(twin.graph, n).name for n in nodes}
    out = []
    for rh in rows_h:
        if rh.op == "input" or rh.node not in wanted:
            continue
        rw, y = rows_w[rh.node], acts[rh.node]
        if tuple(y.shape[-2:]) != (rh.size, rw.size):
            raise AssertionError(f"{rh.name}: PyTorch's size {tuple(y.shape[-2:])} ≠ {(rh.size, rw.size)}")
        hs, ws = _interior_units(rh, per_layer), _interior_units(rw, per_layer)
        for i in range(max(len(hs), len(ws)) if hs and ws else 0):
            uh, uw = hs[i % len(hs)], ws[i % len(ws)]
            (grad,) = torch.autograd.grad(y[0, :, uh, uw].sum(), x, retain_graph=True)
            mask = grad[0, 0] != 0
            theory = (rh.field(uh), rw.field(uw))
            box = support_box(mask)
            inside = box is not None and all(t[0] <= b[0] and b[1] <= t[1] for t, b in zip(theory, box))
            out.append(dict(node=rh.name, op=rh.op, unit=(uh, uw), theory=theory, empirical=box,
                            match=box == theory, inside=inside, support_px=int(mask.sum()),
                            field_px=(theory[0][1] - theory[0][0] + 1) * (theory[1][1] - theory[1][0] + 1)))
    return out
