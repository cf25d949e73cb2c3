"""fcnlib.upsample against an independent computation: the reference's filter formula written out
with NumPy, and torch's own bilinear interpolation (F.interpolate, align_corners=False)."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fcnlib import upsample as up


def upsample_bilinear(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Fixed bilinear upsampling of (N, C, h, w) by ``factor`` as a transposed convolution, cropped to
    (N, C, h·f, w·f) like ``interpolate`` (equal to it away from the border, see fcnlib.upsample)."""
    C = x.shape[1]
    w = up.bilinear_weight(C, 2 * factor, x.dtype).to(x.device)
    y = F.conv_transpose2d(x, w, stride=factor)  # (N, C, (h+1)f, (w+1)f)
    return up.crop_like(y, (x.shape[-2] * factor, x.shape[-1] * factor), up.interpolate_crop(factor))


def reference_upsample_filt(size):
    """surgery.upsample_filt of fcn.berkeleyvision.org, transcribed with NumPy."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 16, 31, 64])
def test_kernel_matches_reference_formula(size):
    k = up.bilinear_kernel(size, dtype=torch.float64)
    assert k.shape == (size, size)
    np.testing.assert_allclose(k.numpy(), reference_upsample_filt(size), rtol=0, atol=1e-15)


def test_kernel_values_by_hand():
    # K = 4: factor 2, centre 1.5 → 1 − |i − 1.5|/2 = 1/4, 3/4, 3/4, 1/4
    row = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=torch.float64)
    assert torch.equal(up.bilinear_kernel(4, torch.float64), torch.outer(row, row))
    # K = 3: factor 2, centre 1 → 1/2, 1, 1/2
    row = torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64)
    assert torch.equal(up.bilinear_kernel(3, torch.float64), torch.outer(row, row))


def test_weight_is_diagonal():
    w = up.bilinear_weight(5, 8)
    assert w.shape == (5, 5, 8, 8)
    k = up.bilinear_kernel(8)
    for i in range(5):
        for j in range(5):
            assert torch.equal(w[i, j], k if i == j else torch.zeros_like(k))


@pytest.mark.parametrize("learnable", [False, True])
def test_upsample_layer(learnable):
    layer = up.upsample_layer(3, 4, learnable=learnable)
    assert isinstance(layer, nn.ConvTranspose2d)
    assert layer.kernel_size == (8, 8) and layer.stride == (4, 4) and layer.bias is None
    assert layer.weight.requires_grad is learnable
    assert torch.equal(layer.weight, up.bilinear_weight(3, 8))
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 3, 6 * 4, 7 * 4)  # (n + 1)·f
    y.sum().backward()
    assert (layer.weight.grad is not None) is learnable


def test_fill_bilinear_reinitializes():
    layer = nn.ConvTranspose2d(4, 4, 6, stride=3, bias=True)
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    up.fill_bilinear_(layer)
    assert torch.equal(layer.weight, up.bilinear_weight(4, 6))
    assert torch.equal(layer.bias, torch.zeros(4))
    dw = nn.ConvTranspose2d(4, 4, 6, stride=3, groups=4, bias=False)
    up.fill_bilinear_(dw)
    x = torch.randn(1, 4, 3, 3)
    assert torch.allclose(dw(x), layer(x), atol=1e-6)  # depthwise = diagonal
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        up.fill_bilinear_(nn.ConvTranspose2d(3, 4, 4, stride=2))
    with pytest.raises(ValueError, match="square"):
        up.fill_bilinear_(nn.ConvTranspose2d(3, 3, (4, 2), stride=2))
    with pytest.raises(TypeError):
        up.fill_bilinear_(nn.Conv2d(3, 3, 4))


def _border_mask(h, w, f):
    rows = torch.zeros(h * f, dtype=torch.bool)
    cols = torch.zeros(w * f, dtype=torch.bool)
    rows[up.border_rows(h, f)] = True
    cols[up.border_rows(w, f)] = True
    return rows[:, None] | cols[None, :]  # (h f, w f)


@pytest.mark.parametrize("f", [2, 4, 8, 32])
def test_deconvolution_equals_interpolate_in_the_interior(f):
    """The identity: the fixed bilinear ConvTranspose2d (kernel 2f, stride f), cropped by f // 2,
    equals F.interpolate(bilinear, align_corners=False) except in the first and last f // 2 rows and
    columns, where interpolate repeats the edge (replicate) and the deconvolution fades to zero."""
    g = torch.Generator().manual_seed(f)
    h, w = 5, 7
    x = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64) + 0.5  # > 0: every border pixel differs
    layer = up.upsample_layer(3, f).double()
    crop = up.interpolate_crop(f)
    assert crop == f // 2
    y = up.crop_like(layer(x), (h * f, w * f), crop)
    ref = F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)
    assert y.shape == ref.shape == (2, 3, h * f, w * f)
    border = _border_mask(h, w, f)
    diff = (y - ref).abs()
    assert diff[..., ~border].max() < 1e-12
    assert (diff > 1e-9).all(0).all(0).equal(border)  # differs at every border pixel, nowhere else
    assert up.border_rows(h, f) == list(range(f // 2)) + list(range(h * f - f // 2, h * f))
    # why: the deconvolution is interpolation with zero padding, everywhere
    assert (y - up.interpolate_zero_padded(x, f)).abs().max() < 1e-12
    # and so in the top band (interior columns) it is interpolate scaled by 1/2 + (p + 1/2)/f
    inner = ~border[h * f // 2]
    for p in range(f // 2):
        scale = 0.5 + (p + 0.5) / f
        assert torch.allclose(y[..., p, inner], scale * ref[..., p, inner], atol=1e-12, rtol=0)
    # the library's functional form is the same thing
    assert (upsample_bilinear(x, f) - y).abs().max() < 1e-12


@pytest.mark.parametrize("f", [3, 5])
def test_odd_factor_needs_odd_kernel(f):
    """For odd f, kernel 2f has no integer crop; kernel 2f − 1 (centre f − 1) with crop (f − 1)/2 works."""
    with pytest.raises(ValueError, match="no integer crop"):
        up.interpolate_crop(f)
    layer = up.fill_bilinear_(nn.ConvTranspose2d(2, 2, 2 * f - 1, stride=f, bias=False)).double()
    x = torch.rand(1, 2, 4, 6, dtype=torch.float64) + 0.5
    crop = up.interpolate_crop(f, 2 * f - 1)
    assert crop == (f - 1) // 2
    y = up.crop_like(layer(x), (4 * f, 6 * f), crop)
    ref = F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)
    border = _border_mask(4, 6, f)
    # interpolate computes its source coordinates with the scale 1/f in single precision, exact for
    # f a power of two but not for 1/3, 1/5: agreement to ~1e-8 here, not 1e-12
    assert (y - ref)[..., ~border].abs().max() < 1e-6
    assert (y - ref)[..., border].abs().min() > 1e-3
    assert (y - up.interpolate_zero_padded(x, f)).abs().max() < 1e-6


def test_crop_like_checks_bounds():
    with pytest.raises(ValueError, match="cannot crop"):
        up.crop_like(torch.zeros(1, 1, 10, 10), (8, 8), 3)


def test_depthwise_layer_is_the_same_map():
    full = up.upsample_layer(5, 4)
    dw = up.upsample_layer(5, 4, depthwise=True)
    assert dw.groups == 5 and dw.weight.shape == (5, 1, 8, 8) and not dw.weight.requires_grad
    x = torch.randn(2, 5, 6, 7)
    assert torch.allclose(full(x), dw(x), atol=1e-6)


def test_upsample_to_input_places_cells_at_their_centres():
    """A cell whose receptive field is centred at k·f + c lands there: with c = (f − 1)/2 that is
    interpolate's grid (crop f/2); other centres shift the crop, edge-extended by at most one cell."""
    f = 4
    x = torch.rand(1, 2, 6, 6, dtype=torch.float64) + 0.5
    layer = up.upsample_layer(2, f).double()
    a = up.upsample_to_input(x, layer, (f - 1) / 2, (24, 24))
    assert torch.equal(a, upsample_bilinear(x, f))
    b = up.upsample_to_input(x, layer, (f - 1) / 2 + 1, (24, 24))  # one pixel later: crop one less
    assert torch.equal(b[..., 1:, 1:], a[..., :-1, :-1])
    c = up.upsample_to_input(x, layer, (f - 1) / 2 - 2, (24, 24))  # two earlier: crop two more
    assert torch.equal(c[..., :-2, :-2], a[..., 2:, 2:])
    d = up.upsample_to_input(x, layer, (f - 1) / 2 - 4, (24, 24))  # 2 rows short at the bottom/right
    assert torch.equal(d[..., :20, :20], a[..., 4:, 4:])
    assert torch.equal(d[..., 22:, :], d[..., 21:22, :].expand_as(d[..., 22:, :]))  # edge repeated
    e = up.upsample_to_input(x, layer, (f - 1) / 2 + 3, (24, 24))  # crop −1: top/left extended by one
    assert torch.equal(e[..., 3:, 3:], a[..., :-3, :-3])
    assert torch.equal(e[..., 0, :], e[..., 1, :]) and not torch.equal(e[..., 1, :], e[..., 2, :])
    for centre in ((f - 1) / 2 + 8, (f - 1) / 2 - 9):
        with pytest.raises(ValueError, match="more than one cell"):
            up.upsample_to_input(x, layer, centre, (24, 24))


def test_separable_upsampling_equals_the_transposed_convolution_and_crop():
    """The final (fixed, channel-wise bilinear) upsampling as A_h · s · A_wᵀ: the transposed
    convolution's numbers, on rectangular maps and crops; learned or channel-mixing layers are refused."""
    torch.manual_seed(0)
    for factor, (h, w), (oy, ox), (H, W) in [(32, (5, 7), (19, 31), (128, 150)), (8, (9, 4), (0, 5), (60, 20)),
                                             (2, (3, 3), (1, 1), (5, 4))]:
        layer = up.upsample_layer(6, factor)                    # fixed: requires_grad False
        s = torch.randn(2, 6, h, w, dtype=torch.float64)
        want = layer.double()(s)[..., oy:oy + H, ox:ox + W]
        got = up.upsample_separable(s, layer.double(), (oy, ox), (H, W))
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-12)
    depthwise = up.upsample_layer(6, 8, depthwise=True)
    s = torch.randn(1, 6, 4, 5)
    assert torch.allclose(up.upsample_separable(s, depthwise, (3, 4), (20, 30)), depthwise(s)[..., 3:23, 4:34], atol=1e-6)
    assert up.separable_kernel(up.upsample_layer(6, 4, learnable=True)) is None
    mixing = up.upsample_layer(3, 4)
    with torch.no_grad():
        mixing.weight[0, 1] += 0.1
    assert up.separable_kernel(mixing) is None
    with pytest.raises(ValueError, match="not a fixed"):
        up.upsampling_matrix(mixing, 0, 3, 8)
