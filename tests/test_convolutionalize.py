"""fcnlib.convolutionalize against independent computations: the classifier itself, run on the whole
input and on every window that an output cell sees (Section 3.1, Fig. 2).

The identities, precisely:
- native size: the convolutionalized net's single output cell equals the classifier's logits;
- no padding (``strip_padding``): every cell equals the classifier on its window of ``rf`` pixels;
- with padding: every cell whose window lies inside the image equals the *unpadded* classifier on that
  window; the padded classifier run on a native-size crop differs (it pads each layer of the crop),
  and the test says so rather than hiding it.
"""
import pytest
import torch
import torchvision
from torch import nn

from fcnlib import classifiers, paper
from fcnlib import receptive_field as rf
from fcnlib import convolutionalize as cv

F64 = dict(rtol=0, atol=1e-9)


def _alexnet(**kw):
    torch.manual_seed(0)
    return torchvision.models.alexnet(**kw).eval()


def _narrow_vgg16(width=0.125, crop=224):
    """torchvision's VGG16 at another width (and fc sizes), 7×7 fc6 grid at crop 224."""
    torch.manual_seed(0)
    return classifiers.vgg16_standin(width=width, crop=crop).eval()


def _randomize_biases(net):
    """Non-zero biases everywhere: padded zeros then differ from ReLU(bias), as in a trained net."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)
    return net


# ----------------------------------------------------------------------------- fc ↔ conv
@pytest.mark.parametrize("C,k,out", [(3, 1, 5), (4, 3, 7), (16, 6, 10), (2, 7, 3)])
def test_linear_to_conv_equals_linear_on_flattened_map(C, k, out):
    torch.manual_seed(0)
    lin = nn.Linear(C * k * k, out).double()
    x = torch.randn(2, C, k, k, dtype=torch.float64)
    conv = cv.linear_to_conv(lin, C, k)
    assert conv.weight.shape == (out, C, k, k) and conv.weight.dtype == torch.float64
    torch.testing.assert_close(conv(x).flatten(1), lin(torch.flatten(x, 1)), **F64)
    # the same numbers by hand: y_o = b_o + Σ_{c,i,j} W[o, c·k·k + i·k + j] x[c, i, j]
    W = lin.weight.detach()
    by_hand = torch.stack([lin.bias.detach()[o] + sum(W[o, c * k * k + i * k + j] * x[:, c, i, j]
                                                      for c in range(C) for i in range(k) for j in range(k))
                           for o in range(out)], 1)
    torch.testing.assert_close(conv(x).flatten(1), by_hand, **F64)


def test_linear_to_conv_checks_sizes_and_copies():
    lin = nn.Linear(8 * 9, 4)
    with pytest.raises(ValueError, match="C·k·k"):
        cv.linear_to_conv(lin, 8, 2)
    conv = cv.linear_to_conv(lin, 8, 3)
    with torch.no_grad():
        conv.weight.zero_()
    assert lin.weight.abs().sum() > 0, "the conv must hold a copy, not a view of the Linear's weights"
    assert type(conv) is nn.Conv2d, "the lesson's layer is a plain convolution (speed wrappers: fcnlib.fast)"


# ----------------------------------------------------------------------------- structure, geometry
def test_layer_names_and_shapes():
    net = cv.convolutionalize(_alexnet())
    assert [n for n, _ in net.named_children()] == [
        "features", "drop5", "fc6", "relu6", "drop6", "fc7", "relu7", "fc8"]
    assert isinstance(net, nn.Sequential)
    assert net.fc6.weight.shape == (4096, 256, 6, 6) and net.fc7.kernel_size == (1, 1)
    vgg = cv.convolutionalize(_narrow_vgg16(), decapitate=True)
    assert [n for n, _ in vgg.named_children()] == [
        "features", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7"]
    assert vgg.fc6.kernel_size == (7, 7) and vgg.fc6.in_channels == 64


def test_geometry_matches_table1():
    t1 = paper.table1()
    for model, name in [(torchvision.models.alexnet(), "FCN-AlexNet"), (_narrow_vgg16(), "FCN-VGG16")]:
        g = cv.convolutionalize(model).geometry
        assert g.rf == t1[name]["rf size"] and g.jump == t1[name]["max stride"], (name, g)
    assert cv.convolutionalize(torchvision.models.alexnet()).geometry.start == -(2 + 2 * 8 + 3 * 16)


@pytest.mark.parametrize("H,W", [(223, 223), (224, 224), (255, 300), (500, 500), (351, 257)])
def test_grid_arithmetic_matches_a_real_forward(H, W):
    net = cv.convolutionalize(_alexnet()).to("meta")
    out = net(torch.empty(1, 3, H, W, device="meta"))
    assert tuple(out.shape[-2:]) == net.grid((H, W))
    assert net.grid(500) == (9, 9)


def test_ceil_mode_pool_arithmetic():
    for k, s, p in [(3, 2, 0), (2, 2, 0), (3, 2, 1), (3, 3, 1)]:
        pool = nn.MaxPool2d(k, s, p, ceil_mode=True)
        for n in range(k, 40):
            assert rf.output_size(nn.Sequential(pool), n) == pool(torch.zeros(1, 1, n, n)).shape[-1]


def test_too_small_input_is_a_clear_error():
    net = cv.convolutionalize(_alexnet()).eval()
    assert net.min_size == 223
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 223, 223)).shape == (1, 1000, 1, 1)
        with pytest.raises(ValueError, match="smaller than one receptive field.*223×223"):
            net(torch.zeros(1, 3, 222, 400))


def test_unsupported_head_is_refused():
    model = _alexnet()
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    with pytest.raises(ValueError):
        cv.convolutionalize(model)


# ----------------------------------------------------------------------------- identity 1: native size
@pytest.mark.parametrize("size", [223, 224, 226])
def test_native_size_logits_alexnet_float64(size):
    model = _randomize_biases(_alexnet().double())
    net = cv.convolutionalize(model)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[:, :, 0, 0], model(x), **F64)


def test_native_size_logits_torchvision_vgg16():
    torch.manual_seed(0)
    model = _randomize_biases(torchvision.models.vgg16().eval())
    net = cv.convolutionalize(model)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[:, :, 0, 0], model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("build", [lambda: classifiers.vgg16_standin(width=0.125, crop=64),
                                   lambda: classifiers.vgg16_standin(width=0.25, crop=96),
                                   lambda: classifiers.alexnet_standin(width=0.25, crop=127),
                                   lambda: classifiers.alexnet_standin(width=0.5, crop=224, fc=100)])
def test_native_size_logits_standins(build):
    torch.manual_seed(0)
    model = _randomize_biases(build().double().eval())
    net = cv.convolutionalize(model)
    x = torch.randn(3, 3, model.crop, model.crop, dtype=torch.float64)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (3, 21, 1, 1)
        torch.testing.assert_close(out[:, :, 0, 0], model(x), **F64)
        deca = cv.convolutionalize(model, decapitate=True)(x)[:, :, 0, 0]   # fc7's activations
        penult = model.classifier[:-1](torch.flatten(model.avgpool(model.features(x)), 1))
        torch.testing.assert_close(deca, penult, **F64)


# ----------------------------------------------------------------------------- identity 2: every cell
@pytest.mark.parametrize("build", [lambda: classifiers.alexnet_standin(width=0.125, crop=224),
                                   lambda: _narrow_vgg16(width=0.0625),
                                   lambda: classifiers.alexnet_standin(width=0.25, crop=127)])
def test_unpadded_net_every_cell_is_the_classifier_on_its_window(build):
    model = cv.strip_padding(_randomize_biases(build().double().eval()))
    net = cv.convolutionalize(model)
    g = net.geometry
    assert g.start == 0 and net.min_size == g.rf
    x = torch.randn(1, 3, g.rf + 2 * g.jump + 5, g.rf + g.jump, dtype=torch.float64)
    with torch.no_grad():
        dense = net(x)
        naive = cv.sliding_window(model, x, g.rf, g.jump)
    assert dense.shape == naive.shape == (1, model.classifier[-1].out_features, 3, 2)
    torch.testing.assert_close(dense, naive, **F64)


@pytest.mark.parametrize("build", [lambda: classifiers.alexnet_standin(width=0.125, crop=224),
                                   lambda: _narrow_vgg16(width=0.0625),
                                   lambda: classifiers.vgg16_standin(width=0.125, crop=64)])
def test_padded_net_interior_cells_are_the_unpadded_classifier_on_their_window(build):
    model = _randomize_biases(build().double().eval())
    net = cv.convolutionalize(model)
    g = net.geometry
    H = g.rf + g.jump               # a span of stride + 1 window starts: at least one inside
    x = torch.randn(1, 3, H, H + g.jump, dtype=torch.float64)
    with torch.no_grad():
        dense = net(x)
        windows, (h, w), (i0, j0) = cv.patches(x, g.rf, g.jump, g.start)
        naive = cv.sliding_window(cv.strip_padding(model), x, g.rf, g.jump, g.start)
    assert h >= 1 and w == h + 1 and windows.shape[-1] == g.rf
    assert dense.shape[-2] >= h + 2, "border cells (which see padding) exist on both sides"
    torch.testing.assert_close(dense[..., i0:i0 + h, j0:j0 + w], naive, **F64)


def test_padded_net_differs_from_the_classifier_on_native_crops():
    """The honest statement: with padding, cell (i, j) is *not* the classifier on the native crop at
    (stride·i, stride·j) — that crop's layers see zero padding where the dense net sees more image.
    Only a crop that is the whole image agrees (identity 1)."""
    model = _randomize_biases(_alexnet().double())
    net = cv.convolutionalize(model)
    x = torch.randn(1, 3, 224 + 64, 224 + 64, dtype=torch.float64)
    with torch.no_grad():
        dense = net(x)
        crops = cv.sliding_window(model, x, 224, 32, batch_size=1)
    assert dense.shape == crops.shape == (1, 1000, 3, 3)
    assert (dense - crops).abs().max() > 1e-6


def test_shape_any_input_and_training_mode_kept():
    model = classifiers.vgg16_standin(width=0.125, crop=64)
    model.train()
    net = cv.convolutionalize(model)
    assert net.training and net.grid((64, 64)) == (1, 1)
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, 3, 100, 192)).shape == (2, 21, *net.grid((100, 192)))


# ----------------------------------------------------------------------------- exercises
def test_exercise_solutions_agree_and_wrong_answers_are_refused():
    from fcnlib import exercises
    exercises.load("01", key=True)
    for key in ("01.fc6_weight", "01.flatten_column", "01.grid"):
        assert exercises.grade(key, exercises.key_answer(key)) == "correct"
    with pytest.raises(exercises.ExerciseError, match="C-major"):
        exercises.check("01.flatten_column", 2 * 256 + 5 * 256 * 6 + 3)    # an H-major guess
    with pytest.raises(exercises.ExerciseError):
        exercises.check("01.grid", (10, 15))


def test_geometry_follows_surgery_and_extra_layers():
    """The FCN models add padding and layers to a convolutionalized net: the size check must follow."""
    net = cv.convolutionalize(classifiers.vgg16_standin(width=0.0625, crop=64)).eval()
    assert net.min_size == 64
    net.features[0].padding = (100, 100)               # the reference FCN's conv1 padding
    assert net.min_size == 1 and net.geometry.start == -(90 + 99)   # conv1: 1 → 100
    net.add_module("upscore", nn.ConvTranspose2d(21, 21, 64, 32))   # an upsampling: sizes still follow
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 16, 16)).shape[:2] == (1, 21)
    net.features[0].padding = (1, 1)
    with pytest.raises(ValueError, match="at least 64×64"):
        net(torch.zeros(1, 3, 40, 40))
