"""fcnlib.stitch: shift-and-stitch equals the rarefied net (float64), held against independent routes:
the strided net run on each shifted crop by hand, the net run patch by patch (Section 3.1), and the
paper's enlarged filters written out with zeros."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fcnlib import runtime
from fcnlib import stitch as st
from fcnlib import upsample as up

TOL = 1e-12


def strided_net(f, pad, pool="max2", conv_stride=False, bn=False, seed=0, ceil_mode=False):
    """conv → ReLU → (pool) blocks down to total stride f, then a 3×3 conv and a 1×1 score layer."""
    torch.manual_seed(seed)
    layers, c = [], 3
    for i in range(f.bit_length() - 1):
        block = [nn.Conv2d(c, 4, 3, padding=pad, stride=2 if conv_stride and i == 0 else 1)]
        if bn:
            block.append(nn.BatchNorm2d(4))
        block.append(nn.ReLU())
        if not (conv_stride and i == 0):
            block.append(nn.MaxPool2d(2, ceil_mode=ceil_mode) if pool == "max2"
                         else nn.MaxPool2d(3, stride=2, padding=pad))
        layers.append(nn.Sequential(*block))  # nested, as torchvision builds its nets
        c = 4
    layers += [nn.Conv2d(c, 5, 3, padding=pad), nn.LeakyReLU(0.1), nn.Conv2d(5, 2, 1)]
    net = nn.Sequential(*layers).double().eval()
    if bn:  # non-trivial running statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
    return net


def both(net, x, f, fill=0.0):
    """The stitched and rarefied maps on their common top-left corner (ceil-mode pooling gives the
    stitched map extra cells that hang off the frame; padded pooling can give the rarefied one more)."""
    s = st.shift_and_stitch(net, x, f, fill=fill)
    r = st.rarefied_forward(st.rarefy(net), x, f, fill=fill)
    h, w = min(s.shape[-2], r.shape[-2]), min(s.shape[-1], r.shape[-1])
    return s[..., :h, :w], r[..., :h, :w]


def rand(H, W, seed=1):
    return torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------ filters
@pytest.mark.parametrize("s", [1, 2, 3, 4])
def test_rarefied_filter_is_the_papers_formula_and_dilation(s):
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    big = st.rarefy_filter(w, s)
    K = 2 * s + 1
    assert big.shape == (4, 3, K, K)
    for i in range(K):
        for j in range(K):
            want = w[..., i // s, j // s] if i % s == 0 and j % s == 0 else torch.zeros(4, 3, dtype=w.dtype)
            assert torch.equal(big[..., i, j], want)
    x = torch.randn(1, 3, 20, 17, dtype=torch.float64)
    assert (F.conv2d(x, big) - F.conv2d(x, w, dilation=s)).abs().max() < TOL


# ------------------------------------------------------------------------------------ geometry
def test_geometry_and_rarefy_structure():
    net = strided_net(8, pad=1)
    g = st.geometry(net)
    assert (g.jump, g.rf, g.start) == (8, 38, -15) and g.centre == 3.5
    r = st.rarefy(net)
    g = st.geometry(r)
    assert (g.jump, g.rf, g.start) == (1, 38, -15)  # same field, same centre, no stride
    assert [k for k, _ in r.state_dict().items()] == [k for k, _ in net.state_dict().items()]
    assert st.geometry(net).jump == 8  # the original is left alone
    assert st.geometry(st.rarefy(net, keep_stride=4)).jump == 4
    assert st.geometry(st.rarefy(net, keep_stride=2)).rf == 38
    with pytest.raises(ValueError, match="keep_stride 3"):
        st.rarefy(net, keep_stride=3)
    with pytest.raises(TypeError, match="AvgPool2d is not supported"):
        st.rarefy(nn.Sequential(nn.Conv2d(3, 3, 3), nn.AvgPool2d(2)))
    with pytest.raises(ValueError, match="same in both"):
        st.geometry(nn.Sequential(nn.Conv2d(3, 3, 3, stride=(2, 1))))


# ------------------------------------------------------------------------------------ the identity
@pytest.mark.parametrize("f", [2, 4, 8])
@pytest.mark.parametrize("variant", ["max2", "conv_stride", "bn"])
def test_stitch_equals_rarefied_everywhere_without_padding(f, variant):
    """No padding anywhere: equal on the whole stitched map, any input size, any bottom/right fill."""
    net = strided_net(f, pad=0, conv_stride=variant == "conv_stride", bn=variant == "bn")
    g = st.geometry(net)
    H, W = 61, 54  # not multiples of f
    x = rand(H, W)
    for fill in (0.0, 3.0):
        s, r = both(net, x, f, fill)
        h = (H - g.rf) // f + 1
        assert s.shape == (1, 2, h * f, (W - g.rf) // f * f + f)
        assert (s - r).abs().max() < TOL
        assert st.interior(net, (H, W)) == (slice(0, s.shape[-2]), slice(0, s.shape[-1]))
    # without any fill the rarefied net gives H − rf + 1 rows: the stitched rows whose windows see no fill
    plain = st.rarefy(net)(x)
    assert plain.shape[-2:] == (H - g.rf + 1, W - g.rf + 1)
    assert (s[..., :H - g.rf + 1, :W - g.rf + 1] - plain).abs().max() < TOL


@pytest.mark.parametrize("f", [2, 4, 8])
def test_interlace_convention_and_patchwise(f):
    """dense[k·f + dy, l·f + dx] is cell (k, l) of the net run on x moved dy up and dx left (by hand),
    and it is the net run on the single receptive-field patch at (k·f + dy, l·f + dx) (Section 3.1)."""
    net = strided_net(f, pad=0)
    g = st.geometry(net)
    H, W = 50, 47
    x = rand(H, W, seed=2)
    s = st.shift_and_stitch(net, x, f)
    xp = torch.cat([x, torch.zeros(1, 3, f - 1, W, dtype=x.dtype)], 2)
    xp = torch.cat([xp, torch.zeros(1, 3, H + f - 1, f - 1, dtype=x.dtype)], 3)
    for dy, dx in [(0, 0), (0, f - 1), (f - 1, 0), (1, f // 2), (f - 1, f - 1)]:
        coarse = net(xp[:, :, dy:dy + H, dx:dx + W])
        assert (s[..., dy::f, dx::f] - coarse).abs().max() < TOL
    for p, q in [(0, 0), (3, 7), (s.shape[-2] - 1 - f, 5), (H - g.rf, W - g.rf)]:
        patch = net(xp[:, :, p:p + g.rf, q:q + g.rf])  # (1, 2, 1, 1)
        assert patch.shape[-2:] == (1, 1)
        assert (s[..., p, q] - patch[..., 0, 0]).abs().max() < TOL


@pytest.mark.parametrize("f", [2, 4, 8])
@pytest.mark.parametrize("variant", ["max2", "max3", "conv_stride", "ceil"])
def test_stitch_equals_rarefied_in_the_interior_with_padding(f, variant):
    """Padding: equal exactly on interior() (cells whose receptive field lies in the frame) and on the
    unshifted rows/columns (dy = 0) at the top/left; every other coarse row/column of cells differs.
    (With fill 0 a cell whose window passes the bottom/right edge only through the first layer's
    zero padding may agree by coincidence — the padding and the fill are both zeros — so the fill
    here is 3.)"""
    net = strided_net(f, pad=1, pool="max3" if variant == "max3" else "max2",
                      conv_stride=variant == "conv_stride", ceil_mode=variant == "ceil")
    H, W = 63, 74
    x = rand(H, W, seed=3)
    s0, r0 = both(net, x, f)
    s, r = both(net, x, f, fill=3.0)
    iy, ix = st.interior(net, (H, W))
    g = st.geometry(net)
    assert iy.start == -(g.start // f) * f  # ⌈−start / f⌉·f
    assert iy.stop > iy.start and ix.stop > ix.start
    assert (s0 - r0)[..., iy, ix].abs().max() < TOL
    diff = (s - r).abs()
    assert diff[..., iy, ix].max() < TOL
    assert diff[..., 0:iy.start:f, ix].max() < TOL  # dy = 0 rows above the interior
    assert diff[..., iy, 0:ix.start:f].max() < TOL
    row_bad = diff[..., ix].amax((0, 1, 3))  # (rows,)
    col_bad = diff[..., iy, :].amax((0, 1, 2))  # (cols,)
    for bad, inside in ((row_bad, iy), (col_bad, ix)):
        for k in range(len(bad) // f):
            cell = slice(k * f, (k + 1) * f)
            if not inside.start <= k * f < inside.stop:
                assert bad[cell].max() > 1e-6, f"coarse cell {k} agrees, the interior is too small"
    assert diff.max() > 1e-6  # with padding the identity is *not* global


@pytest.mark.parametrize("f", [2, 4, 8])
def test_partial_rarefaction_then_stitch(f):
    """Rarefying down to stride f', then stitching f'² shifts, gives the fully rarefied map."""
    net = strided_net(8, pad=1)
    part = st.rarefy(net, keep_stride=f)
    assert st.geometry(part).jump == f
    H, W = 40, 44
    x = rand(H, W, seed=4)
    s = st.shift_and_stitch(part, x)
    r = st.rarefied_forward(st.rarefy(net), x, f)[..., :s.shape[-2], :s.shape[-1]]
    iy, ix = st.interior(part, (H, W))
    assert (s - r)[..., iy, ix].abs().max() < TOL
    assert st.rarefy(part).state_dict().keys() == net.state_dict().keys()


def test_chunked_stitch_is_the_same():
    net = strided_net(4, pad=1)
    x = rand(32, 32)
    assert torch.equal(st.shift_and_stitch(net, x, chunk=3), st.shift_and_stitch(net, x))


# ------------------------------------------------------------------------------------ on pixels
def ramp_net(f):
    """A linear, symmetric net (averaging 3×3 convs, 2×2/stride-2 averaging convs, all zero-padded by
    one): away from the padding, the output at a cell is a linear input's value at the cell's
    receptive-field centre (a half-integer, as 2×2 windows make it)."""
    layers, c = [], 1
    for _ in range(f.bit_length() - 1):
        smooth = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        down = nn.Conv2d(1, 1, 2, stride=2, padding=1, bias=False)
        smooth.weight.data = (torch.tensor([[1., 2., 1.]]).T @ torch.tensor([[1., 2., 1.]]) / 16).view(1, 1, 3, 3)
        down.weight.data.fill_(0.25)
        layers += [smooth, down]
    layers.append(nn.Conv2d(1, 1, 1, bias=False))
    layers[-1].weight.data.fill_(1.0)
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("f", [2, 4, 8])
@pytest.mark.parametrize("keep", [1, 2, 4, 8])
def test_dense_scores_sit_on_the_pixel_grid(f, keep):
    """On a ramp x[i, j] = i + 2j, deconvolution with the derived crop reproduces the ramp exactly
    (bilinear interpolation of a linear map) and stitch/rarefied are within half a pixel of it."""
    if keep > f:
        return
    net = st.rarefy(ramp_net(f), keep_stride=keep)
    g = st.geometry(net)
    H, W = 72, 80
    i, j = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                          indexing="ij")
    x = (i + 2 * j)[None, None]
    m = g.rf  # margin: no padding, no interpolation border
    inner = (..., slice(m, H - m), slice(m, W - m))
    if keep > 1:  # a dense net has nothing to upsample
        deconv = st.dense_scores(net, x, "deconv")
        assert deconv.shape == x.shape
        assert (deconv - x)[inner].abs().max() < 1e-9
        assert g.centre % 1 == 0.5
    off = float(g.centre) - st.pixel_shift(net)  # the window centre of pixel q is q + off
    assert -0.5 <= off < 0.5
    for method in ("stitch", "rarefied"):
        d = st.dense_scores(net, x, method)
        assert (d - (x + 3 * off))[inner].abs().max() < 1e-9


def test_dense_scores_stitch_equals_rarefied_inside():
    net = strided_net(8, pad=1)
    x = rand(64, 64, seed=5)
    a, b = st.dense_scores(net, x, "stitch"), st.dense_scores(net, x, "rarefied")
    g, s = st.geometry(net), st.pixel_shift(net)
    n = 64 + s + max(0, g.rf - 1 - s + 2 * g.start)  # the frame dense_scores gives both
    # the rarefied net gets no extra f − 1 rows of fill here, so a stitched window must also end
    # before the frame does for every shift: the interior of a frame f − 1 smaller
    iy, ix = st.interior(net, (n - g.jump + 1, n - g.jump + 1))
    assert iy.stop > iy.start
    assert a.shape == b.shape == (1, 2, 64, 64)
    assert (a - b)[..., iy, ix].abs().max() < TOL
    layer = up.upsample_layer(2, 8).double()
    assert torch.equal(st.dense_scores(net, x, "deconv", upsample=layer), st.dense_scores(net, x, "deconv"))
    with pytest.raises(ValueError, match="unknown method"):
        st.dense_scores(net, x, "nearest")


@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("keep", [2, 4])
def test_deconv_margin_is_the_least_padding_that_covers(pad, keep):
    """A net rarefied down to stride ``keep`` loses border cells its strided form kept; deconv_margin
    is the least zero margin after which the upsampled map covers the input (held against the
    shapes the nets actually produce), and dense_scores' deconvolution then sits where the rarefied
    net's own cells are: at the interior cell centres it returns the coarse scores themselves."""
    net = st.rarefy(strided_net(8, pad=pad), keep_stride=keep)
    g = st.geometry(net)
    for n in (24, 31, 40):
        m = st.deconv_margin(g, n)
        layer = up.upsample_layer(2, keep, depthwise=True).double()

        def covers(margin):
            coarse = net(torch.zeros(1, 3, n + 2 * margin, n + 2 * margin, dtype=torch.float64))
            try:
                up.upsample_to_input(coarse, layer, g.centre - margin, (n, n))
                return True
            except ValueError:
                return False
        assert covers(m) and (m == 0 or not covers(m - 1)), (pad, keep, n, m)
    x = torch.randn(1, 3, 40, 40, dtype=torch.float64)
    m = st.deconv_margin(g, 40)
    with torch.no_grad():
        y = st.dense_scores(net, x, "deconv")                     # (1, 2, 40, 40)
        coarse = net(F.pad(x, (m, m, m, m)))                       # (1, 2, h, w)
    assert y.shape == (1, 2, 40, 40)
    for k in range(coarse.shape[-1]):                              # cells whose centre is a pixel
        q = k * keep + g.centre - m
        if q == int(q) and 0 <= q < 40 and 0 < k < coarse.shape[-1] - 1:
            assert torch.allclose(y[0, :, int(q), int(q)], coarse[0, :, k, k], atol=1e-12)


def test_upsampled_model():
    torch.manual_seed(0)
    net = st.strided_net(5, widths=(4, 6, 8))  # stride 4
    fixed, learned = st.Upsampled(net).eval(), st.Upsampled(net, learnable=True).eval()
    assert fixed.up.groups == 5 and not fixed.up.weight.requires_grad  # depthwise, frozen
    assert learned.up.weight.shape == (5, 5, 8, 8) and learned.up.weight.requires_grad
    x = torch.randn(2, 3, 32, 28)
    with torch.no_grad():
        y = fixed(x)
        assert y.shape == (2, 5, 32, 28)
        assert torch.allclose(y, learned(x), atol=1e-5)  # the same map until trained
        assert torch.allclose(y, st.dense_scores(net.eval(), x, "deconv"), atol=1e-6)
        # the centre of the net's cells is interpolate's: the deconvolution is interpolate inside
        ref = F.interpolate(net(x), scale_factor=4, mode="bilinear", align_corners=False)
        assert (y - ref)[..., 2:-2, 2:-2].abs().max() < 1e-5
    assert sum(p.numel() for p in fixed.parameters() if p.requires_grad) == \
        sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="dense already"):
        st.Upsampled(st.rarefy(net))


def test_shift_map_and_tagger():
    for f in (2, 3, 4):
        m = st.shift_map(f, cells=3)
        i, j = torch.meshgrid(torch.arange(3 * f), torch.arange(3 * f), indexing="ij")
        assert torch.equal(m, (i % f) * f + (j % f))


def test_flop_count_and_median_times():
    """A layer after strides totalling s is computed (f/s)² times over by stitching: here conv1
    (s = 1) f² times and the 1×1 score layer (after all of f) once, like the rarefied net."""
    net = strided_net(4, pad=0).float()
    x = torch.randn(1, 3, 40, 40)
    once = runtime.flop_count(net, x)
    stitched = runtime.flop_count(st.shift_and_stitch, net, x)
    dense = runtime.flop_count(st.rarefied_forward, st.rarefy(net), x, 4)
    assert once < dense < stitched < 16 * once + 1
    t = runtime.median_times({"net": lambda: net(x), "dense": lambda: st.rarefy(net)(x)}, torch.device("cpu"), reps=2)
    assert set(t) == {"net", "dense"} and all(v > 0 for v in t.values())
