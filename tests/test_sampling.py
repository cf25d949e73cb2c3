"""fcnlib.sampling: loss sampling with p = 1 is whole-image training exactly; which cell owns which
pixel, held against the bilinear upsampling and the reference geometry; true patchwise training's
centre cell equals the whole image's; median-frequency weights by hand."""
from fractions import Fraction

import pytest
import torch
from torch import nn

from fcnlib import paper, train
from fcnlib import receptive_field as rf
from fcnlib import sampling as S
from fcnlib import upsample


class TinyFCN(nn.Module):
    """FCN-shaped: conv1 padded (like the reference's 100), stride 8, score layer, bilinear ×8
    transposed convolution, final crop from the coordinate map. ``inner_pad=0``: no padding inside."""

    def __init__(self, pad=12, classes=4, inner_pad=0, width=6):
        super().__init__()
        c = width
        self.features = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(c, c, 3, padding=inner_pad), nn.ReLU(), nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(c, c, 3, padding=inner_pad), nn.ReLU(), nn.MaxPool2d(2, 2, ceil_mode=True))
        self.score = nn.Conv2d(c, classes, 1)
        self.up = upsample.upsample_layer(classes, 8)
        self.crop = rf.Crop(0)
        o = rf.crop_offset_between(self, "up", "x", input_shape=(1, 3, 32, 32))
        self.crop.offset = (o, o)

    def scores(self, x):
        return self.score(self.features(x))  # (N, K, h, w), stride 8

    def forward(self, x):
        return self.crop(self.up(self.scores(x)), x)  # (N, K, H, W)


def tiny_fcn(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyFCN(**kw)


def scenes(n=12, size=32, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, size, size, generator=g)
    Y = (X[:, 0] > 0.3).long() + (X[:, 1] > 0.8).long() + (X[:, 2] > 1.2).long()
    Y[:, ::7, ::5] = train.VOID
    return X, Y.clamp(max=classes - 1) if classes < 4 else Y


# ---------------------------------------------------------------- the p = 1 identity
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_p1_loss_and_gradients_equal_whole_image_exactly(reduction):
    X, Y = scenes(4)
    grid = S.CellGrid.from_model(tiny_fcn(), 32)
    keep = S.LossSampler(grid, 1.0, seed=3).mask(Y, 0)
    assert keep.all()
    grads = []
    for masked in (False, True):
        net = tiny_fcn()
        out = net(X)
        loss = (S.sampled_loss(out, Y, keep, reduction=reduction) if masked
                else train.pixel_loss(out, Y, reduction=reduction))
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in net.parameters() if p.requires_grad]))
    (l0, g0), (l1, g1) = grads
    assert torch.equal(l0, l1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))


def test_p1_training_run_equals_whole_image_training():
    X, Y = scenes(12)
    cfg = train.TrainConfig(iters=6, batch_size=3, lr=0.05, seed=1)
    grid = S.CellGrid.from_model(tiny_fcn(), 32)
    a, b = tiny_fcn(), tiny_fcn()
    ha = train.train(a, (X, Y), cfg, progress=False)
    hb = S.train_sampled(b, (X, Y), cfg, 1.0, grid, progress=False)
    assert ha.loss == hb.loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_sampled_run_scales_the_batch_and_keeps_about_p_of_the_cells():
    X, Y = scenes(12)
    cfg = train.TrainConfig(iters=40, batch_size=2, lr=0.01)
    grid = S.CellGrid.from_model(tiny_fcn(), 32)
    sizes = []
    sampler = S.LossSampler(grid, 0.25, seed=0)

    def batch_fn(x, y, step):
        sizes.append(len(x))
        return sampler(x, y, step)

    train.train(tiny_fcn(), (X, Y), S.sampled_config(cfg, 0.25), batch_fn=batch_fn, progress=False)
    assert set(sizes) == {8}
    assert abs(sum(sampler.kept) / len(sampler.kept) - 0.25) < 0.05


def test_images_per_batch():
    assert S.images_per_batch(20, 0.25) == 80 and S.images_per_batch(2, 0.5) == 4
    with pytest.raises(ValueError, match="whole number"):
        S.images_per_batch(2, 0.3)
    with pytest.raises(ValueError):
        S.images_per_batch(2, 0.0)


def test_masks_depend_on_seed_and_step_only():
    grid = S.CellGrid(rf=1, jump=32, centre=Fraction(25, 2))
    y = torch.zeros(5, 64, 64, dtype=torch.long)
    a, b = S.LossSampler(grid, 0.5, seed=3), S.LossSampler(grid, 0.5, seed=3)
    assert torch.equal(a(None, y, 7)[1], b(None, y, 7)[1])
    assert not torch.equal(a(None, y, 7)[1], a(None, y, 8)[1])


# ---------------------------------------------------------------- which cell owns which pixel
def test_reference_fcn32s_grid_by_hand():
    """The reference FCN-32s (conv1 pad 100, ceil pools, 7×7 fc6): stride 32 and cell k centred at
    32k + 12.5 — the same place the final crop of 19 puts the upsampling's peak (32k + 31.5 − 19)."""
    import torchvision
    with torch.device("meta"):
        f = torchvision.models.vgg16().features
        net = nn.Sequential(*f, nn.Conv2d(512, 4096, 7), nn.ReLU(), nn.Conv2d(4096, 4096, 1),
                            nn.ReLU(), nn.Conv2d(4096, 21, 1))
    net[0].padding = (100, 100)
    for m in net:
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = True
    grid = S.CellGrid.from_model(net, 500)
    assert (grid.jump, grid.centre, grid.rf) == (32, Fraction(25, 2), 404)
    assert Fraction(32 * 3 + 31, 1) + Fraction(1, 2) - 19 == grid.centre + 32 * 3
    # a 64-px image: pixels 0-28 → cell 0, 29-60 → cell 1, 61-63 → cell 2
    assert grid.index(64).tolist() == [0] * 29 + [1] * 32 + [2] * 3
    assert grid.shape(64, 64) == (3, 3)


@pytest.mark.parametrize("stride,centre", [(32, Fraction(25, 2)), (8, Fraction(-3, 2)), (8, Fraction(4)),
                                           (4, Fraction(-7)), (16, Fraction(7, 2)), (5, Fraction(1, 3))])
def test_index_route_equals_nearest_upsampling_route(stride, centre):
    grid = S.CellGrid(rf=1, jump=stride, centre=centre)
    for H, W in [(64, 64), (33, 17), (7, 50)]:
        h, w = grid.shape(H, W)
        cells = torch.rand(3, h, w, generator=torch.Generator().manual_seed(H + W)) < 0.5
        assert torch.equal(grid.expand(cells, H, W), grid.expand_nearest(cells, H, W))
        # a pixel's cell is the nearest centre
        for q in range(H):
            k = grid.cell_of(q)
            assert abs(q - (centre + stride * k)) <= Fraction(stride, 2)


def test_owner_is_the_cell_with_the_largest_bilinear_weight():
    """Push a one-hot map through the net's own upsampling and crop: the pixels where cell k weighs
    most are the pixels the grid gives to cell k."""
    net = tiny_fcn()
    H = 32
    grid = S.CellGrid.from_model(net, H)
    x = torch.zeros(1, 3, H, H)
    h, w = net.scores(x).shape[-2:]
    maps = []
    with torch.no_grad():
        for k in range(h):
            one = torch.zeros(1, 4, h, w)
            one[0, 0, k, :] = 1.0  # a whole row of cells: weights along H only
            maps.append(net.crop(net.up(one), x)[0, 0, :, 0])  # (H,)
    best = torch.stack(maps).argmax(0)  # (H,) absolute score-map row per pixel
    assert torch.equal(best - grid.cell_of(0), grid.index(H))
    assert grid.cell_of(0) >= 0 and grid.cell_of(H - 1) < h


def test_mask_is_constant_on_each_cell():
    grid = S.CellGrid.from_model(tiny_fcn(), 32)
    y = torch.zeros(6, 32, 32, dtype=torch.long)
    keep = S.LossSampler(grid, 0.5).mask(y, 0)
    idx = grid.index(32)
    for n in range(6):
        for a in idx.unique():
            for b in idx.unique():
                block = keep[n][idx == a][:, idx == b]
                assert block.all() or not block.any()


# ---------------------------------------------------------------- true patchwise training
def test_patch_centre_cell_equals_the_whole_image_cell():
    net = tiny_fcn(inner_pad=0).eval()
    X, Y = scenes(2, size=40)
    grid = S.CellGrid.from_model(net, 40)
    j, P = S.patch_plan(grid)
    cells = S.all_cells(grid, 2, 40, 40)
    crops, labels = S.patch_batch(X, Y, cells, grid)
    assert crops.shape == (len(cells), 3, P, P) and labels.shape == (len(cells), P, P)
    with torch.no_grad():
        whole = net.scores(X)   # (N, K, h, w)
        part = net.scores(crops)  # (M, K, h', w')
    for m, (n, ci, cj) in enumerate(cells.tolist()):
        assert torch.allclose(part[m, :, j, j], whole[n, :, ci, cj], atol=1e-5)
    # each labelled pixel is the loss term of exactly one patch, with its own label
    assert (labels != train.VOID).sum() == (Y != train.VOID).sum()
    owned = grid.index(40) + grid.cell_of(0)
    for m, (n, ci, cj) in enumerate(cells.tolist()):
        rows, cols = (owned == ci).nonzero()[:, 0], (owned == cj).nonzero()[:, 0]
        patch_rows = rows - grid.jump * (ci - j)
        patch_cols = cols - grid.jump * (cj - j)
        want = Y[n][rows][:, cols]
        assert torch.equal(labels[m][patch_rows][:, patch_cols], want)


def test_patch_step_runs_and_accumulates_gradients():
    net = tiny_fcn(inner_pad=1)
    X, Y = scenes(2)
    grid = S.CellGrid.from_model(net, 32)
    cells = S.all_cells(grid, 2, 32, 32)[:5]
    loss = S.patchwise_step(net, X, Y, cells, grid, chunk=2)
    assert loss > 0 and all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_break_even_p_of_the_paper_is_below_its_02():
    t = paper.timing()
    p = S.break_even_p(t["forward_dense_ms"] + t["backward_dense_ms"],
                       t["forward_single_ms"] + t["backward_single_ms"], 100)
    assert p == pytest.approx(59 / 360) and p < 0.2


# ---------------------------------------------------------------- class balancing
def test_median_frequency_weights_by_hand():
    Y = torch.tensor([[[0, 0, 0, 1]],
                      [[0, 0, 2, 255]]])  # class 0: 5 px in images of 4 + 3 px; 1: 1 of 4; 2: 1 of 3
    w = S.median_frequency_weights(Y, 4)
    freq = torch.tensor([5 / 7, 1 / 4, 1 / 3])
    med = freq.median()
    assert torch.allclose(w[:3], (med / freq).float())
    assert w[3] == 1.0
    logits = torch.randn(2, 4, 1, 4)
    plain = S.sampled_loss(logits, Y)
    weighted = S.sampled_loss(logits, Y, weight=w)
    assert not torch.isclose(plain, weighted)


def test_grid_of_a_course_fcn32s_is_read_along_its_paths():
    """fcnlib.models' FCN-32s (VGG16 geometry, narrow, random weights): the same grid as by hand."""
    transplant = pytest.importorskip("fcnlib.transplant")
    net = transplant.fcn32s(width=0.125)
    grid = S.CellGrid.from_model(net, 64)
    assert (grid.jump, grid.centre, grid.rf) == (32, Fraction(25, 2), 404)


def test_upsampling_matrix_equals_the_transposed_convolution_and_crop():
    net = tiny_fcn()
    x = torch.zeros(1, 3, 40, 40)
    s = torch.randn(2, 4, *net.scores(x).shape[-2:])
    A = S.upsampling_matrix(net.up, net.crop.offset[0], s.shape[-1], 40)
    want = net.crop(net.up(s), x)
    got = torch.einsum("hk,nckl,wl->nchw", A, s, A)
    assert torch.allclose(got, want, atol=1e-5)


def test_above_pool4_on_cached_features_is_the_whole_net():
    """Fig. 5's embedded runs train FCN-32s above pool4 on cached features: the same outputs as the
    whole net, and only conv5 and above can train."""
    transplant = pytest.importorskip("fcnlib.transplant")
    torch.manual_seed(0)
    net = transplant.fcn32s(width=0.125).eval()
    x = torch.randn(3, 3, 64, 64)
    want = net(x)
    feats = S.pool4_features(net, x, chunk=2)
    top = S.AbovePool4(net, 64).eval()
    assert torch.allclose(top(feats), want, atol=1e-5)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    below = {n for n, _ in net.named_parameters() if n.startswith(("to_pool3.", "to_pool4."))}
    assert below and below <= frozen
    assert frozen - below == {n for n in frozen if n.startswith("upscore.")}  # the fixed bilinear kernel
    assert [n for n, p in top.named_parameters() if p.requires_grad] == \
        [n for n, p in net.named_parameters() if p.requires_grad]
