"""fcnlib.efficiency: the §3.1 timing harness, its FLOP counts against a count by hand, the paper's
(Caffe) geometry and the GEMM choice (the GEMM paths themselves: tests/test_fast.py; numbers are not
timed here: timings are the benchmark's and notebook 01's business)."""
import math

import pytest
import torch
import torchvision
from torch import nn

from fcnlib import classifiers, paper
from fcnlib import convolutionalize as cv
from fcnlib import efficiency as ef
from fcnlib import runtime


def _alexnet():
    torch.manual_seed(0)
    return torchvision.models.alexnet().eval()


# ----------------------------------------------------------------------------- FLOPs by hand
def _hand_flops(model: nn.Module, size: int) -> int:
    """2 × multiply-adds of every convolution and fully connected layer, from the layer arithmetic
    (PyTorch's output-size rule, ceil mode included), independent of fcnlib."""
    total, side, channels = 0, size, 3
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p = (v[0] if isinstance(v, tuple) else v for v in (m.kernel_size, m.stride, m.padding))
            span = side + 2 * p - k
            if getattr(m, "ceil_mode", False):
                out = math.ceil(span / s) + 1
                out -= (out - 1) * s >= side + p
            else:
                out = span // s + 1
            if isinstance(m, nn.Conv2d):
                total += 2 * m.in_channels * m.out_channels * k * k * out * out
                channels = m.out_channels
            side = out
        elif isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features                  # once per window
    return total, side, channels


@pytest.mark.parametrize("geometry,patch,grid", [("torchvision", 224, 9), ("caffe", 227, 10)])
def test_flops_and_grids_agree_with_a_count_by_hand(geometry, patch, grid):
    clf = _alexnet() if geometry == "torchvision" else ef.caffe_geometry(_alexnet())
    net = cv.convolutionalize(clf)
    assert net.grid(500) == (grid, grid)
    # the classifier on one window: features to 6×6, then the three Linear layers
    assert ef.flops(clf, (1, 3, patch, patch)) == _hand_flops(clf, patch)[0]
    # the dense net: fc6 is a 6×6 convolution over pool5's map, fc7/fc8 1×1 ones (counted as convs)
    f_dense = ef.flops(net, (1, 3, 500, 500))
    conv_part, side, channels = _hand_flops(clf.features, 500)
    assert side - 6 + 1 == grid
    fc = 2 * grid * grid * (channels * 36 * 4096 + 4096 * 4096 + 4096 * 1000)
    assert f_dense == conv_part + fc
    ratio = grid * grid * _hand_flops(clf, patch)[0] / f_dense
    assert ratio == pytest.approx({"torchvision": 7.08, "caffe": 7.70}[geometry], abs=0.01)


def test_flops_per_module_are_each_layers_count_by_hand():
    """The per-module breakdown (notebook 01's bar chart) sums, layer by layer, to the hand count."""
    clf = _alexnet()
    per = ef.flops(clf, (1, 3, 224, 224), per_module=True)
    layers = list(clf.features)
    for i, m in enumerate(layers):        # a conv's FLOPs: the features up to it minus those before it
        if isinstance(m, nn.Conv2d):
            by_hand = _hand_flops(nn.Sequential(*layers[:i + 1]), 224)[0] - _hand_flops(nn.Sequential(*layers[:i]), 224)[0]
            assert per[f"features.{i}"] == by_hand, i
    for i, m in enumerate(clf.classifier):
        if isinstance(m, nn.Linear):
            assert per[f"classifier.{i}"] == 2 * m.in_features * m.out_features, i
    assert sum(v for n, v in per.items() if n.count(".") == 1) == ef.flops(clf, (1, 3, 224, 224))


def test_best_time_calls_the_function_as_asked():
    calls = []
    t = runtime.best_time(lambda: calls.append(1), torch.device("cpu"), reps=4, warmup=2)
    assert len(calls) == 6 and 0 <= t < float("inf")


def test_caffe_geometry_is_the_papers_grid_and_leaves_the_original_alone():
    m = _alexnet()
    c = ef.caffe_geometry(m)
    assert m.features[0].padding == (2, 2) and not any(getattr(x, "ceil_mode", False) for x in m.features)
    assert c.features[0].padding == (0, 0) and all(x.ceil_mode for x in c.features if isinstance(x, nn.MaxPool2d))
    assert list(cv.convolutionalize(c).grid(500)) == ef.paper_speedups()["grid"] == [10, 10]
    assert cv.convolutionalize(c).grid(227) == (1, 1)
    with torch.no_grad():                                           # same weights: a 227-px image still classifies
        assert c(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)
    with pytest.raises(ValueError, match="features"):
        ef.caffe_geometry(nn.Sequential(nn.Linear(2, 2)))


def test_gemm_choice_is_checked():
    cpu = torch.device("cpu")
    assert ef.resolve_gemm("default", cpu) == "default"
    assert ef.resolve_gemm("auto", torch.device("cuda")) == "default"
    with pytest.raises(ValueError, match="choose one of"):
        ef.resolve_gemm("mkl", cpu)
    with pytest.raises(ValueError, match="CPU only"):
        ef.resolve_gemm("onednn", torch.device("cuda"))


# ----------------------------------------------------------------------------- the harness
@pytest.mark.parametrize("geometry,gemm", [("torchvision", "default"), ("caffe", "auto")])
def test_dense_vs_naive_harness_and_flops(geometry, gemm):
    """The harness runs and states what it compared (numbers are not asserted)."""
    model = classifiers.vgg16_standin(width=0.0625, crop=64)
    r = ef.dense_vs_naive(model, size=128, patch=64, reps=1, single=2, geometry=geometry, gemm=gemm, min_time=0.01)
    clf = ef.caffe_geometry(model) if geometry == "caffe" else model
    net = cv.convolutionalize(clf)
    h, w = net.grid(128)
    assert r["grid"] == [h, w] and r["cells"] == h * w and r["single_timed"] == 2
    assert r["geometry"] == geometry and r["gemm"] == ef.resolve_gemm(gemm, torch.device("cpu"))
    assert r["overhang"] == max(0, (h - 1) * 32 + 64 - 128)
    assert set(r["ms"]) == {"forward", "backward"} and all(v > 0 for d in r["ms"].values() for v in d.values())
    # FLOPs: the naive path is h·w classifier passes; the dense one shares the convolutions' work
    assert r["gflops_naive"] * 1e9 == h * w * ef.flops(clf, (1, 3, 64, 64))
    assert r["gflops_dense"] * 1e9 == ef.flops(net, (1, 3, 128, 128))
    assert 1 < r["flop_ratio"] < h * w
    with pytest.raises(ValueError, match="geometry"):
        ef.dense_vs_naive(model, size=128, patch=64, geometry="caffe2")


def test_paper_speedups_from_the_paper_facts():
    ps = ef.paper_speedups()
    t = paper.timing()
    assert ps["grid"] == [10, 10]
    assert ps["forward"] == pytest.approx(100 * t["forward_single_ms"] / t["forward_dense_ms"])
    assert 5 < ps["forward"] < 6 and 6 < ps["backward"] < 7   # "more than 5 times faster"
