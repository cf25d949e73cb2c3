"""In-network upsampling: backwards (transposed) convolution initialized to bilinear interpolation.

Section 3.3: upsampling by an integer factor f is convolution with a fractional input stride 1/f, so
"a natural way to upsample is backwards convolution (sometimes called deconvolution) with an output
stride of f". Its filter may stay fixed to bilinear interpolation or be learned. The reference
implementation (fcn.berkeleyvision.org, ``surgery.upsample_filt``) uses kernel 2f, stride f, no bias,
the bilinear filter on the channel diagonal (class c is upsampled from class c only), and keeps the
final upsampling fixed; the paper learns the intermediate 2× ones (Section 4.2).

The bilinear kernel of size K (PAPER-FACTS.md): factor = (K + 1) // 2, centre = factor − 1 if K is odd
else factor − 0.5, ``w[i, j] = (1 − |i − centre| / factor)(1 − |j − centre| / factor)``.

Relation to ``F.interpolate(mode="bilinear", align_corners=False)`` (tested in tests/test_upsample.py).
A transposed convolution with stride f and kernel K puts input cell k's filter at outputs
k·f … k·f + K − 1, its peak at k·f + centre; ``interpolate`` places input cell k at output
k·f + (f − 1)/2 (the centre of the f×f block it covers). Cropping ``crop = centre − (f − 1)/2
= (K − f)/2`` outputs at the top and left lines them up (:func:`interpolate_crop`): f // 2 for
K = 2f and even f. Then, away from the border, each output is the same two-tap linear blend of the
same two inputs in both. At the border they differ: outside the outermost cell centres (the first
f/2 and the last f/2 rows and columns of the n·f output) ``interpolate`` clamps its source coordinate
and repeats the edge value (replicate padding), while the transposed convolution finds no cell
beyond the edge and blends with zero (zero padding): there it equals the edge value times
(1/2 + (p + 1/2)/f) for the p-th row from the edge. Exactly: the cropped transposed convolution of x
equals ``interpolate`` of x zero-padded by one cell, cropped by f (:func:`interpolate_zero_padded`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def bilinear_kernel(size: int, dtype=torch.float32) -> torch.Tensor:
    """The reference implementation's bilinear filter, shape (size, size)."""
    if size < 1:
        raise ValueError(f"kernel size must be positive, got {size}")
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    w1 = 1 - (og - centre).abs() / factor  # (size,)
    return torch.outer(w1, w1).to(dtype)  # (size, size)


def bilinear_weight(channels: int, size: int, dtype=torch.float32) -> torch.Tensor:
    """Transposed-convolution weight (channels, channels, size, size): bilinear on the channel
    diagonal, zero elsewhere (each channel is upsampled on its own)."""
    w = torch.zeros(channels, channels, size, size, dtype=dtype)
    w[range(channels), range(channels)] = bilinear_kernel(size, dtype)
    return w


@torch.no_grad()
def fill_bilinear_(module: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """(Re)initialize a square-kernel ConvTranspose2d in place to bilinear upsampling; bias to zero.

    ``groups=1`` needs in_channels == out_channels (the filter goes on the diagonal); a depthwise
    layer (groups == in_channels == out_channels) gets the filter in every group.
    """
    if not isinstance(module, nn.ConvTranspose2d):
        raise TypeError(f"expected an nn.ConvTranspose2d, got {type(module).__name__}")
    kh, kw = module.kernel_size
    if kh != kw:
        raise ValueError(f"bilinear initialization needs a square kernel, got {kh}×{kw}")
    cin, cout = module.in_channels, module.out_channels
    if cin != cout:
        raise ValueError(f"bilinear initialization upsamples each channel on its own, so it needs "
                         f"in_channels == out_channels, got {cin} and {cout}")
    if module.groups == 1:
        module.weight.copy_(bilinear_weight(cin, kh, module.weight.dtype))
    elif module.groups == cin:
        module.weight.copy_(bilinear_kernel(kh, module.weight.dtype).expand_as(module.weight))
    else:
        raise ValueError(f"groups must be 1 or in_channels ({cin}), got {module.groups}")
    if module.bias is not None:
        module.bias.zero_()
    return module


def upsample_layer(channels: int, factor: int, learnable: bool = False,
                   depthwise: bool = False) -> nn.ConvTranspose2d:
    """Upsampling by ``factor``: ConvTranspose2d(kernel 2·factor, stride factor, no bias), bilinear.

    ``learnable=False`` (the reference's final upsampling) freezes the weight (requires_grad False);
    ``learnable=True`` (the paper's intermediate 2× upsamplings) starts bilinear and is trained.
    The weight is (channels, channels, 2f, 2f), bilinear on the diagonal, as in the reference;
    ``depthwise=True`` stores only the diagonal (``groups=channels``, weight (channels, 1, 2f, 2f)):
    the same map at 1/channels of the FLOPs, but a learned one can no longer mix channels.
    An input of n cells gives (n + 1)·factor outputs; crop :func:`interpolate_crop` at the top/left
    (or what the layer geometry asks, :func:`align_crop`) to get n·factor.
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False,
                               groups=channels if depthwise else 1)
    fill_bilinear_(layer)
    layer.weight.requires_grad_(learnable)
    return layer


def separable_kernel(up: nn.ConvTranspose2d) -> torch.Tensor | None:
    """The 1-D kernel w when ``up`` is a *fixed* upsampling that maps each channel on its own by the
    same separable filter w ⊗ w (an FCN's final bilinear upsampling); None otherwise (a learned
    layer, one that mixes channels, or one whose filter is not an outer product)."""
    W = up.weight                                                 # (C, C / groups, K, K)
    C = up.in_channels
    if W.is_meta:                                                 # shapes only: nothing to read
        return None
    if W.requires_grad or up.bias is not None or up.out_channels != C or up.groups not in (1, C) \
            or W.shape[-1] != W.shape[-2] or up.stride[0] != up.stride[1] or up.padding != (0, 0) \
            or up.output_padding != (0, 0) or up.dilation != (1, 1):
        return None
    with torch.no_grad():
        k = W[0, 0]
        if up.groups == C:                                        # depthwise: one filter per channel
            diagonal, off = W[:, 0], W.new_zeros(0)
        else:                                                     # full: the filter on the channel diagonal
            eye = torch.eye(C, dtype=torch.bool, device=W.device)
            diagonal, off = W[eye], W[~eye]
        if not (torch.equal(diagonal, k.expand(C, *k.shape)) and not off.any()):
            return None
        w = k.diagonal().sqrt()                                   # (K,)
        return w if torch.allclose(torch.outer(w, w), k, atol=1e-6) else None


def upsampling_matrix(up: nn.ConvTranspose2d, offset: int, cells: int, size: int) -> torch.Tensor:
    """Upsampling by ``up`` followed by a crop at ``offset``, along one axis, as a (size, cells)
    matrix A: for a separable, channel-wise ``up`` (:func:`separable_kernel`), channel c of
    ``crop(up(s))`` is ``A_h @ s[c] @ A_w.T``. Output q gets w[q + offset − f·k] from cell k."""
    return _axis_matrix(_kernel_or_raise(up), up.stride[0], offset, cells, size)


def _kernel_or_raise(up: nn.ConvTranspose2d) -> torch.Tensor:
    w = separable_kernel(up)
    if w is None:
        raise ValueError("the upsampling is not a fixed channel-wise separable filter w ⊗ w (not the final bilinear)")
    return w


def _axis_matrix(w: torch.Tensor, f: int, offset: int, cells: int, size: int) -> torch.Tensor:
    """The (size, cells) matrix of :func:`upsampling_matrix` from the 1-D kernel ``w`` and stride ``f``."""
    tap = torch.arange(size, device=w.device)[:, None] + offset - f * torch.arange(cells, device=w.device)  # (size, cells)
    inside = (tap >= 0) & (tap < len(w))
    return torch.where(inside, w[tap.clamp(0, len(w) - 1)], torch.zeros((), dtype=w.dtype, device=w.device))


def upsample_separable(score: torch.Tensor, up: nn.ConvTranspose2d, offset, size,
                       kernel: torch.Tensor | None = None) -> torch.Tensor:
    """``crop(up(score))`` at ``offset`` (oy, ox) to ``size`` (H, W), for a separable channel-wise ``up``:
    two small matrix products per channel instead of a transposed convolution that also multiplies
    every channel by the zeros off the diagonal — the same sums, in another order. ``kernel``: ``up``'s
    :func:`separable_kernel`, when the caller has it already (it is checked once, not per axis)."""
    (oh, ow), (H, W) = offset, size
    w, f = (_kernel_or_raise(up) if kernel is None else kernel), up.stride[0]
    A_h = _axis_matrix(w, f, oh, score.shape[-2], H).to(score.dtype)   # (H, h)
    A_w = _axis_matrix(w, f, ow, score.shape[-1], W).to(score.dtype)   # (W, w)
    return torch.einsum("hk,nckl,wl->nchw", A_h, score, A_w)            # (N, K, H, W)


def align_crop(size: int, centre: float) -> int:
    """Top/left crop that puts a transposed convolution's output on the input's pixel grid.

    With kernel ``size``, output o holds the filter centre (size − 1)/2 of cell k at o = k·f + (size − 1)/2;
    if cell k belongs at pixel k·f + ``centre`` (its receptive field's centre), pixel q is output
    q + (size − 1)/2 − centre. The result may be negative (the map must be padded, not cropped).
    """
    crop = (size - 1) / 2 - centre
    if crop != int(crop):
        raise ValueError(f"kernel {size} puts its peak half a pixel off a cell centre at {centre}: "
                         f"no integer crop aligns them (with kernel 2f use an even factor; for an odd "
                         f"factor, kernel 2f − 1)")
    return int(crop)


def interpolate_crop(factor: int, size: int | None = None) -> int:
    """Top/left crop aligning a stride-``factor`` bilinear transposed convolution with kernel
    ``size`` (default 2·factor) to ``F.interpolate(align_corners=False)``: (size − factor) / 2.

    interpolate puts cell k at k·f + (f − 1)/2, so this is :func:`align_crop` with that centre.
    """
    size = 2 * factor if size is None else size
    return align_crop(size, (factor - 1) / 2)


def crop_like(y: torch.Tensor, size: tuple[int, int], offset: int | tuple[int, int]) -> torch.Tensor:
    """``y[..., oy:oy + H, ox:ox + W]`` — the crop that aligns a map to a reference of ``size``."""
    oy, ox = (offset, offset) if isinstance(offset, int) else offset
    H, W = size
    if oy < 0 or ox < 0 or oy + H > y.shape[-2] or ox + W > y.shape[-1]:
        raise ValueError(f"cannot crop {tuple(y.shape[-2:])} at offset {(oy, ox)} to {(H, W)}")
    return y[..., oy:oy + H, ox:ox + W]


def fit_to(y: torch.Tensor, size: tuple[int, int], what: str = "output") -> torch.Tensor:
    """The top-left ``size`` of a map, or an error saying the net's outputs fall short of the input."""
    H, W = size
    if y.shape[-2] < H or y.shape[-1] < W:
        raise ValueError(f"{what}: the net's outputs cover {tuple(y.shape[-2:])}, not the input's "
                         f"{(H, W)}; give the first layers padding (the reference pads conv1 by 100)")
    return y[..., :H, :W]


def shortfall(length: int, crop: int, n: int) -> tuple[int, int]:
    """(before, after): how many pixels an upsampled map of ``length`` placed with ``crop``
    (:func:`align_crop`; negative: the map starts after the image) lacks at the start and at the end
    of an ``n``-px image side."""
    before = max(0, -crop)
    return before, max(0, n - (length + before - max(crop, 0)))


def upsample_to_input(coarse: torch.Tensor, layer: nn.ConvTranspose2d, centre: float,
                      size: tuple[int, int]) -> torch.Tensor:
    """Coarse scores (N, K, h, w) through a transposed convolution, cropped to the input ``size``
    so that each cell sits at its receptive field's ``centre`` (:func:`align_crop`).

    Where the upsampled map falls short of the input by at most one stride (a negative crop at the
    top/left; at the bottom/right, a net whose last cells do not reach the edge, like one with
    unpadded dilated pooling), it is extended with its edge values; more is an error.
    """
    y = layer(coarse)  # (N, K, (h + 1)f, (w + 1)f) for kernel 2f
    c, f = align_crop(layer.kernel_size[0], centre), layer.stride[0]
    H, W = size
    top, bottom = shortfall(y.shape[-2], c, H)
    _, right = shortfall(y.shape[-1], c, W)
    if max(top, bottom, right) > f:
        raise ValueError(f"deconv: the ×{f} upsampled map {tuple(y.shape[-2:])} at crop {c} falls short "
                         f"of the {H}×{W} input by more than one cell; give the net padding")
    if top or bottom or right:
        y = F.pad(y, (top, right, top, bottom), mode="replicate")
    c = max(c, 0)
    return fit_to(y[..., c:, c:], size, "deconv")


def interpolate_zero_padded(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``F.interpolate`` of x padded with one cell of zeros all round, cropped back to h·f × w·f:
    what the cropped bilinear transposed convolution computes everywhere, border included."""
    xp = F.pad(x, (1, 1, 1, 1))  # (N, C, h+2, w+2)
    y = F.interpolate(xp, scale_factor=factor, mode="bilinear", align_corners=False)
    return y[..., factor:-factor, factor:-factor]


def border_rows(n: int, factor: int) -> list[int]:
    """Rows (or columns) of an n·f upsampled map where the transposed convolution and
    ``interpolate`` differ: outside the outermost cell centres, the first and the last f // 2."""
    m = factor // 2  # outputs p with (p + 1/2)/f − 1/2 < 0, i.e. p < (f − 1)/2
    return list(range(m)) + list(range(n * factor - m, n * factor))
