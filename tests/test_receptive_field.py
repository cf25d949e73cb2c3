"""fcnlib.receptive_field held against hand arithmetic, the paper's Table 1, the reference
implementation's crop offsets, PyTorch's own output sizes and the gradient support of linear nets."""
import random
from fractions import Fraction

import pytest
import torch
import torchvision
from torch import nn

from fcnlib import paper, rf_check, transplant
from fcnlib import receptive_field as rf
from fcnlib.receptive_field import Crop, GeometryError


# ---------------------------------------------------------------- networks, built here (no weights)
def vgg16_reference_features(pad=100, ceil=True):
    """torchvision's VGG16 convolutions with the reference FCN geometry: conv1_1 padding 100, ceil pools."""
    with torch.device("meta"):
        features = torchvision.models.vgg16().features
    features[0].padding = (pad, pad)
    for m in features:
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = ceil
    return list(features)


def fcn_vgg16_paths(pad=100, ceil=True):
    """The layer paths of the reference FCN-32s/16s/8s, from the input to each map."""
    L = vgg16_reference_features(pad, ceil)
    with torch.device("meta"):
        head = [nn.Conv2d(512, 4096, 7), nn.ReLU(True), nn.Dropout(), nn.Conv2d(4096, 4096, 1),
                nn.ReLU(True), nn.Dropout(), nn.Conv2d(4096, 21, 1)]
        t = lambda k, s: nn.ConvTranspose2d(21, 21, k, stride=s, bias=False)  # noqa: E731
        p = dict(score_pool4=L[:24] + [nn.Conv2d(512, 21, 1)], score_pool3=L[:17] + [nn.Conv2d(256, 21, 1)])
        p["score_fr"] = L + head
        p["upscore"] = p["score_fr"] + [t(64, 32)]
        p["upscore2"] = p["score_fr"] + [t(4, 2)]
        p["upscore16"] = p["upscore2"] + [t(32, 16)]
        p["upscore_pool4"] = p["upscore2"] + [t(4, 2)]
        p["upscore8"] = p["upscore_pool4"] + [t(16, 8)]
    return p


def fcn_alexnet():
    with torch.device("meta"):
        return nn.Sequential(*torchvision.models.alexnet().features, nn.Conv2d(256, 4096, 6), nn.ReLU(),
                             nn.Dropout(), nn.Conv2d(4096, 4096, 1), nn.ReLU(), nn.Dropout())


def fcn_vgg16():
    with torch.device("meta"):
        return nn.Sequential(*fcn_vgg16_paths()["score_fr"][:-1])


def googlenet_features(caffe=False):
    """GoogLeNet up to inception5b + its average pool, built by the library (transplant.table1_nets);
    the assertions below hold it to Table 1 and to hand-counted numbers."""
    return transplant.table1_nets("caffe" if caffe else "torchvision")["FCN-GoogLeNet"]


def row(rows, name):
    (r,) = [r for r in rows if r.name == name]
    return r


# ---------------------------------------------------------------- arithmetic by hand
def test_tiny_net_by_hand():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.Conv2d(1, 1, 3), nn.MaxPool2d(2, 2), nn.Conv2d(1, 1, 3))
    last = rf.receptive_fields(net)[-1]
    # 1 → 3 → 5 (jump 1) → 6 (jump 2) → 6 + 2·2 = 10; centres 1, 2, 2.5, 2.5 + 2·1
    assert (last.rf, last.jump, last.centre, last.first) == (10, 2, Fraction(9, 2), (0, 9))
    assert rf.coord_map(list(net)) == (2, Fraction(9, 2))


def test_compose_is_the_layerwise_rule():
    rng = random.Random(0)
    for _ in range(20):
        layers, ks = [], (1, 1)
        for _ in range(rng.randint(1, 6)):
            k, s, d = rng.randint(1, 5), rng.randint(1, 3), rng.randint(1, 2)
            layers.append(rng.choice([nn.Conv2d(1, 1, k, s, dilation=d), nn.MaxPool2d(k, s, dilation=d)]))
            ks = rf.compose(ks, (d * (k - 1) + 1, s))
        last = rf.receptive_fields(nn.Sequential(*layers))[-1]
        assert (last.rf, last.jump) == ks


def test_coord_maps_of_single_layers():
    assert rf.coord_map([nn.Conv2d(1, 1, 3, padding=1)]) == (1, 0)
    assert rf.coord_map([nn.Conv2d(1, 1, 3, padding=100)]) == (1, -99)
    assert rf.coord_map([nn.MaxPool2d(2, 2)]) == (2, Fraction(1, 2))
    # transposed k=4, s=2: output y sits at input (y − 3/2) / 2 (Caffe: top = 2·bottom + 3/2)
    assert rf.coord_map([nn.ConvTranspose2d(1, 1, 4, 2)]) == (Fraction(1, 2), Fraction(-3, 4))
    # stride-2 conv (centre 0) then that upsampling with padding 1: 0 + 2·(1 − 3/2)/2
    assert rf.coord_map([nn.Conv2d(1, 1, 3, 2, 1), nn.ConvTranspose2d(1, 1, 4, 2, 1)]) == (1, Fraction(-1, 2))


# ---------------------------------------------------------------- Table 1 and the reference offsets
def test_table1_receptive_fields_and_stride():
    table = paper.table1()
    alex = rf.receptive_fields(fcn_alexnet())
    vgg = rf.receptive_fields(fcn_vgg16())
    # the paper's numbers are the field of fc6 (its 6×6 / 7×7 kernel) and fc7 (1×1), not of pool5
    assert [row(alex, n).rf for n in ("12", "13", "16")] == [195, 355, 355]  # pool5, fc6, fc7
    assert [row(vgg, n).rf for n in ("30", "31", "34")] == [212, 404, 404]
    assert (alex[-1].rf, vgg[-1].rf) == (355, 404)
    assert (table["FCN-AlexNet"]["rf size"], table["FCN-VGG16"]["rf size"]) == (355, 404)
    assert max(r.jump for r in alex) == max(r.jump for r in vgg) == 32 == table["FCN-VGG16"]["max stride"]


def test_googlenet_dag():
    caffe = rf.receptive_fields(googlenet_features(caffe=True), 224)
    assert caffe[-2].op == "cat" and (caffe[-2].rf, caffe[-1].rf) == (715, 907)  # inception5b, pool5
    assert caffe[-1].jump == 32 == paper.table1()["FCN-GoogLeNet"]["max stride"]
    assert paper.table1()["FCN-GoogLeNet"]["rf size"] == 907
    tv = rf.receptive_fields(googlenet_features(), 224)  # 3×3 "5×5" branch, 2×2 pool4, adaptive pool
    assert (tv[-2].rf, tv[-1].rf) == (379, 571)
    cats = [r for r in caffe if r.op == "cat"]
    assert len(cats) == 9 and all(r.aligned for r in cats)


def test_reference_crop_offsets():
    p = fcn_vgg16_paths()
    assert rf.crop_offset(p["upscore"], []) == 19                    # FCN-32s
    assert rf.crop_offset(p["score_pool4"], p["upscore2"]) == 5      # FCN-16s, FCN-8s
    assert rf.crop_offset(p["upscore16"], []) == 27
    assert rf.crop_offset(p["score_pool3"], p["upscore_pool4"]) == 9  # FCN-8s
    assert rf.crop_offset(p["upscore8"], []) == 31
    assert paper.crop_offsets() == {"fcn32s": {"final": 19}, "fcn16s": {"pool4": 5, "final": 27},
                                    "fcn8s": {"pool4": 5, "pool3": 9, "final": 31}}  # parsed from PAPER-FACTS.md


def test_offsets_without_padding_100_are_negative():
    p = fcn_vgg16_paths(pad=1)
    with pytest.raises(GeometryError, match="negative offset -80"):
        rf.crop_offset(p["upscore"], [])
    assert rf.crop_offset(p["score_pool4"], p["upscore2"]) == 5  # skips share conv1: unchanged


class FCNGeometry(nn.Module):
    """FCN-32s/16s/8s wired as graphs, their crops built from crop_offset before any forward pass."""

    def __init__(self, variant="8s", ceil=True, slicing=False):
        super().__init__()
        p = fcn_vgg16_paths(ceil=ceil)
        L = p["score_fr"]
        self.variant, self.slicing = variant, slicing
        self.to_pool3, self.to_pool4 = nn.Sequential(*L[:17]), nn.Sequential(*L[17:24])
        self.to_fr = nn.Sequential(*L[24:])
        self.score_pool4, self.score_pool3 = p["score_pool4"][-1], p["score_pool3"][-1]
        final = dict(zip(("32s", "16s", "8s"), ("upscore", "upscore16", "upscore8")))[variant]
        for name in ("upscore2", "upscore_pool4", final):
            setattr(self, name, p[name][-1])
        self.crop4 = Crop(rf.crop_offset(p["score_pool4"], p["upscore2"]))
        self.crop3 = Crop(rf.crop_offset(p["score_pool3"], p["upscore_pool4"]))
        self.crop = Crop(rf.crop_offset(p[final], []))

    def forward(self, x):
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        score = self.to_fr(pool4)
        if self.variant == "32s":
            return self.crop(self.upscore(score), x)
        up2 = self.upscore2(score)
        if self.slicing:  # the way many PyTorch ports crop
            s4 = self.score_pool4(pool4)
            fuse4 = up2 + s4[:, :, 5:5 + up2.size()[2], 5:5 + up2.size()[3]]
        else:
            fuse4 = up2 + self.crop4(self.score_pool4(pool4), up2)
        if self.variant == "16s":
            return self.crop(self.upscore16(fuse4), x)
        up4 = self.upscore_pool4(fuse4)
        fuse3 = up4 + self.crop3(self.score_pool3(pool3), up4)
        return self.crop(self.upscore8(fuse3), x)


def fcn_crops(variant, ceil=True):
    p = fcn_vgg16_paths(ceil=ceil)
    return {"32s": [(p["upscore"], [])],
            "16s": [(p["score_pool4"], p["upscore2"]), (p["upscore16"], [])],
            "8s": [(p["score_pool4"], p["upscore2"]), (p["score_pool3"], p["upscore_pool4"]),
                   (p["upscore8"], [])]}[variant]


@pytest.mark.parametrize("slicing", [False, True])
def test_fcn8s_graph(slicing):
    net = FCNGeometry("8s", slicing=slicing)
    assert [net.crop4.offset, net.crop3.offset, net.crop.offset] == [(5, 5), (9, 9), (31, 31)]
    assert rf.crop_offset_between(net, "score_pool4", "upscore2") == 5
    assert rf.crop_offset_between(net, "score_pool3", "upscore_pool4") == 9
    assert rf.crop_offset_between(net, "upscore8", "x") == 31
    assert rf.coord_map_between(net, "x", "crop") == (1, 0)  # the output is aligned with the image
    rows = rf.receptive_fields(net, 500)
    assert all(r.aligned for r in rows) and row(rows, "crop").size == 500
    assert row(rows, "getitem_2" if slicing else "crop4").size == row(rows, "upscore2").size
    assert row(rows, "to_fr.7").rf == 404  # fc6


def test_sizes_are_pytorchs():
    """The analytic sizes against a real forward pass (of the one-channel twin), floor and ceil."""
    for ceil in (True, False):
        path = fcn_vgg16_paths(ceil=ceil)["upscore8"]
        twin = rf_check.linear_twin(nn.Sequential(*path))
        for n in (1, 26, 37, 64, 100, 127, 250):
            x = torch.zeros(1, 1, n, 30, dtype=torch.float64)
            try:
                want = rf.output_size(path, n)
            except GeometryError:
                with pytest.raises(RuntimeError):
                    twin(x)
                continue
            assert twin(x).shape[2] == want


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_misaligned_sizes(variant):
    """Ceil-mode pooling: every size fits; floor mode: the sizes misaligned_sizes names are exactly
    those where the graph cannot be evaluated or its output is not the image's size."""
    assert rf.misaligned_sizes(fcn_crops(variant), range(1, 257)) == []
    bad = set(rf.misaligned_sizes(fcn_crops(variant, ceil=False), range(1, 257)))
    assert {n for n in range(1, 26)} <= bad  # too small for fc6 with floor pooling
    net = FCNGeometry(variant, ceil=False)
    for n in range(1, 129):  # the graph walk's sizes agree
        try:
            rf.receptive_fields(net, n)
            assert n not in bad
        except GeometryError:
            assert n in bad
    twin = rf_check.linear_twin(net)
    for n in range(40, 72):  # one period of the 32-pixel stride, in real forward passes
        try:
            ok = twin(torch.zeros(1, 1, n, n, dtype=torch.float64)).shape[-2:] == (n, n)
        except (RuntimeError, ValueError):
            ok = False
        assert ok == (n not in bad), n


# ---------------------------------------------------------------- merges (a DAG by hand)
class Skewed(nn.Module):
    """Two branches of the same size and jump but shifted fields: a: conv3 (no padding), field
    [u, u+2]; b: x[2:, 2:] then conv3 (padding 1), field [u+1, u+3]. Their sum reads [u, u+3]."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.a(x) + self.b(x[:, :, 2:, 2:])


class InceptionLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1, self.b3 = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 3, padding=1)
        self.b5 = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 5, padding=2))
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.head = nn.Conv2d(8, 1, 3, stride=2)

    def forward(self, x):
        return self.head(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1))


def test_union_of_shifted_branches_by_hand():
    rows = rf.receptive_fields(Skewed(), 20)
    add = rows[-1]
    assert (add.rf, add.first, add.jump, add.size) == (4, (0, 3), 1, 18)
    assert not add.aligned  # centres 1 and 2: the first branch's map is kept
    assert add.centre == 1
    # and in a real forward/backward pass of the very network (not a twin), made positive and linear
    net = Skewed().double()
    for m in (net.a, net.b):
        nn.init.constant_(m.weight, 1.0)
    x = torch.rand(1, 1, 20, 20, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0, 7, 7].backward()
    assert rf_check.support_box(x.grad[0, 0] != 0) == ((7, 10), (7, 10))
    assert all(r["match"] for r in rf_check.empirical_check(Skewed(), 20))


def test_inception_like_cat():
    rows = rf.receptive_fields(InceptionLike(), 32)
    cat = [r for r in rows if r.op == "cat"][0]
    assert (cat.rf, cat.centre, cat.aligned) == (5, 0, True)
    assert (rows[-1].rf, rows[-1].jump, rows[-1].size) == (7, 2, 15)
    checks = rf_check.empirical_check(InceptionLike(), 32)
    assert checks and all(c["match"] for c in checks)


# ---------------------------------------------------------------- theory against gradient support
def test_empirical_dilation():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(4, 4, 3, dilation=3),
                        nn.MaxPool2d(2, 2), nn.Conv2d(4, 1, 3, dilation=2))
    rows = rf.receptive_fields(net, 40)
    assert [r.rf for r in rows if r.op != "ReLU"] == [1, 5, 11, 12, 20]
    checks = rf_check.empirical_check(net, 40)
    assert len({c["node"] for c in checks}) == 4 and all(c["match"] for c in checks)
    first = [c for c in checks if c["node"] == "0"]
    assert all(c["support_px"] == 9 < c["field_px"] == 25 for c in first)  # dilation leaves holes


def test_empirical_transposed_periodic():
    """Upsampling with kernels that the stride does not divide: fields differ from unit to unit."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.MaxPool2d(3, 3, ceil_mode=True),
                        nn.ConvTranspose2d(2, 2, 5, stride=3), nn.ReLU(),
                        nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1))
    rows = rf.receptive_fields(net, 64)
    assert rows[-1].jump == Fraction(1, 1) and rows[-1].rf_min < rows[-1].rf
    checks = rf_check.empirical_check(net, 64, per_layer=6)
    ups = [c for c in checks if c["op"] == "ConvTranspose2d"]
    assert len({c["unit"] for c in ups}) >= 10 and all(c["match"] for c in checks)
    assert len({c["field_px"] for c in ups}) > 1


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "fcn8s", "googlenet"])
def test_empirical_big_nets(name):
    net, size = {"alexnet": (fcn_alexnet, 380), "vgg16": (fcn_vgg16, 420), "fcn8s": (FCNGeometry, 480),
                 "googlenet": (lambda: googlenet_features(caffe=True)[:9], 360)}[name]
    net = net()
    checks = rf_check.empirical_check(net, size, per_layer=2)
    layers = {c["node"] for c in checks}
    assert len(layers) >= 8 and all(c["match"] for c in checks), [c for c in checks if not c["match"]][:2]


def test_max_pooling_shrinks_the_support():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2, 2), nn.Conv2d(1, 1, 3), nn.MaxPool2d(2, 2),
                        nn.Conv2d(1, 1, 3))
    lin = rf_check.empirical_check(net, 40)
    mx = rf_check.empirical_check(net, 40, keep_max=True)
    assert all(c["match"] for c in lin) and all(c["inside"] for c in mx)
    assert all(c["support_px"] < c["field_px"] for c in mx if c["op"] == "Conv2d" and c["node"] != "0")


# ---------------------------------------------------------------- bad input
def test_unknown_module_is_named():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Upsample(scale_factor=2), nn.Conv2d(8, 1, 1))
    with pytest.raises(GeometryError, match=r"Upsample at '1'.*register_pointwise"):
        rf.receptive_fields(net)
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Mish())
    with pytest.raises(GeometryError, match="Mish"):
        rf.receptive_fields(net)
    rf.register_pointwise(nn.Mish)
    try:
        assert rf.receptive_fields(net)[-1].rf == 3
    finally:
        rf.POINTWISE.discard(nn.Mish)

    class Swish(nn.Module):  # custom modules are traced through: x * sigmoid(x) is a pointwise merge
        def forward(self, x):
            return x * torch.sigmoid(x)
    assert rf.receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), Swish()))[-1].rf == 3
    with pytest.raises(GeometryError, match="interpolate"):
        rf.receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), _Interp()))


class _Im2colConv(nn.Conv2d):
    """A convolution computed another way (like convolutionalize's FCConv2d): still a Conv2d."""

    def forward(self, x):
        cols = torch.nn.functional.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        h = (x.shape[-2] + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        return (self.weight.flatten(1) @ cols).unflatten(-1, (h, -1))


def test_conv_subclasses_keep_their_geometry():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), _Im2colConv(2, 1, 5, stride=2, padding=1))
    last = rf.receptive_fields(net, 32)[-1]  # 3 + (5 − 1)·1; centre 1 + (2 − 1)·1; (30 + 2 − 5) // 2 + 1
    assert (last.rf, last.jump, last.centre, last.size) == (7, 2, 2, 14)
    assert net(torch.zeros(1, 1, 32, 32)).shape[-2:] == (14, 14)
    assert all(c["match"] for c in rf_check.empirical_check(net, 32))


class _Interp(nn.Module):
    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=2.0)


class _Unaligned(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        return self.pool(x) + x


def test_flatten_and_linear_are_refused():
    with torch.device("meta"):
        vgg = torchvision.models.vgg16()
    with pytest.raises(GeometryError, match="flatten"):
        rf.receptive_fields(vgg, 224)
    with pytest.raises(GeometryError, match="Linear.*no spatial geometry"):
        rf.receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Linear(4, 4)))
    assert rf.receptive_fields(vgg, 224, upto="avgpool")[-1].rf == 212  # an identity at 224


def test_adaptive_pooling_needs_a_fitting_input_size():
    with torch.device("meta"):
        alex = torchvision.models.alexnet()
    with pytest.raises(GeometryError, match="AdaptiveAvgPool2d at 'avgpool' has input-dependent geometry"):
        rf.receptive_fields(alex, upto="avgpool")
    with pytest.raises(GeometryError, match="13 → 6: uneven windows"):
        rf.receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 1), nn.AdaptiveAvgPool2d(6)), 13)
    rows = rf.receptive_fields(alex, 224, upto="avgpool")  # 6 → 6: an identity
    assert rows[-1].rf == rows[-2].rf == 195 and rows[-1].size == 6
    rows = rf.receptive_fields(alex, 415, upto="avgpool")  # 12 → 6: exactly a 2×2 pooling
    assert (rows[-1].rf, rows[-1].jump) == (195 + 32, 64)


def test_misfits_are_errors():
    with pytest.raises(GeometryError, match="different jumps"):
        rf.crop_offset([nn.MaxPool2d(2, 2)], [])
    with pytest.raises(GeometryError, match="non-integer offset -1/2"):
        rf.crop_offset([nn.Conv2d(1, 1, 2)], [])
    with pytest.raises(GeometryError, match=r"different jumps \['2', '1'\] meet at 'add'"):
        rf.receptive_fields(_Unaligned())
    with pytest.raises(GeometryError, match="too small"):
        rf.output_size([nn.Conv2d(1, 1, 7)], 5)
    with pytest.raises(ValueError, match="runs past"):
        Crop(3)(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 6, 6))
