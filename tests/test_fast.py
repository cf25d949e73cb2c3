"""fcnlib.fast: every speed path equals the plain lesson module it wraps (an independent computation:
F.conv2d, F.linear, the unwrapped module), and each private-API path has its plain fallback tested."""
import copy

import pytest
import torch
from torch import nn

from fcnlib import classifiers, models, transplant
from fcnlib import convolutionalize as cv
from fcnlib import fast as fs

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
F32 = dict(rtol=1e-5, atol=1e-5)
F64 = dict(rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- fc layers as one GEMM
@pytest.mark.parametrize("k,d,p,s,H,W", [(3, 1, 0, 1, 7, 9), (1, 1, 0, 1, 4, 3), (3, 2, 1, 1, 11, 12),
                                         (2, 1, 1, 2, 9, 8), (6, 1, 0, 1, 6, 6)])
@pytest.mark.parametrize("x_cl,w_cl", [(False, False), (True, True), (True, False), (False, True)])
def test_fcconv_is_a_conv2d_forward_and_backward(k, d, p, s, H, W, x_cl, w_cl):
    """FCConv2d computes itself as im2col + GEMM; it must equal F.conv2d, gradients included, for any
    dilation/padding/stride (rarefied filters of Section 3.2 change fc6's dilation) and memory formats
    of input and kernel (each picks a column order)."""
    torch.manual_seed(0)
    fmt = {True: torch.channels_last, False: torch.contiguous_format}
    m = fs.FCConv2d(4, 5, k, dilation=d, padding=p, stride=s).double().to(memory_format=fmt[w_cl])
    x = torch.randn(2, 4, H, W, dtype=torch.float64).contiguous(memory_format=fmt[x_cl]).requires_grad_()
    y, ref = m(x), torch.nn.functional.conv2d(x, m.weight, m.bias, s, p, d)
    torch.testing.assert_close(y, ref, **F64)
    g1 = torch.autograd.grad(y.square().sum(), [x, m.weight, m.bias])
    g2 = torch.autograd.grad(ref.square().sum(), [x, m.weight, m.bias])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-8)
    assert isinstance(m, nn.Conv2d)


@pytest.mark.parametrize("shape", [(4, 7, 9), (0, 4, 7, 9)], ids=["unbatched", "empty"])
@pytest.mark.parametrize("k,p,s", [(3, 0, 1), (1, 0, 1), (3, 1, 2)])
def test_fcconv_empty_and_unbatched_inputs_like_conv2d(shape, k, p, s):
    """nn.Conv2d takes an unbatched (C, H, W) image and an empty batch (N = 0); so must FCConv2d."""
    torch.manual_seed(0)
    m = fs.FCConv2d(4, 5, k, padding=p, stride=s).double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    y, ref = m(x), torch.nn.functional.conv2d(x, m.weight, m.bias, s, p)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, **F64)
    if len(shape) == 3:
        g1 = torch.autograd.grad(y.square().sum(), [x, m.weight])
        g2 = torch.autograd.grad(ref.square().sum(), [x, m.weight])
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-8)


def test_fcconv_refuses_too_small_or_wrong_channel_inputs_clearly():
    m = fs.FCConv2d(4, 5, 3, padding=1, dilation=2)                # a 5×5 kernel, padded by 1: 3 px at least
    assert m(torch.zeros(1, 4, 3, 3)).shape == (1, 5, 1, 1)
    with pytest.raises(ValueError, match=r"(?s)2×9.*5×5.*at least 3×3.*pad or resize"):
        m(torch.zeros(1, 4, 2, 9))
    with pytest.raises(ValueError, match=r"(?s)2×9.*5×5"):
        m(torch.zeros(0, 4, 2, 9))
    with pytest.raises(ValueError, match=r"(?s)\(2, 3, 6, 6\).*3 channels.*4"):
        m(torch.zeros(2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"(?s)\(N, C, H, W\).*\(6, 6\)"):
        m(torch.zeros(6, 6))


def test_fc_as_gemm_reroutes_only_the_fc_layers_and_keeps_outputs():
    torch.manual_seed(0)
    net = cv.convolutionalize(classifiers.vgg16_standin(width=0.0625, crop=64)).eval()
    fast = fs.fc_as_gemm(net)
    assert all(type(m) is nn.Conv2d for m in net.modules() if isinstance(m, nn.Conv2d)), "original untouched"
    assert {n for n, m in fast.named_modules() if isinstance(m, fs.FCConv2d)} == {"fc6", "fc7", "fc8"}
    assert all(type(m) is nn.Conv2d for m in fast.features.modules() if isinstance(m, nn.Conv2d))
    assert fast.state_dict().keys() == net.state_dict().keys()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), **F32)


# ----------------------------------------------------------------------------- the oneDNN GEMM
@needs_onednn
def test_packed_gemm_equals_f_linear_and_follows_weight_changes():
    if fs._ONEDNN_LINEAR is None:
        pytest.skip("this PyTorch has no prepacked oneDNN linear (the plain path is tested below)")
    torch.manual_seed(0)
    lin = nn.Linear(300, 70)
    fast = fs.OneDNNLinear.of(lin)
    assert fast.weight is lin.weight and set(fast.state_dict()) == set(lin.state_dict())
    x = torch.randn(9, 300)
    with torch.inference_mode():
        assert fast.gemm.applies(x)
        torch.testing.assert_close(fast(x), lin(x), **F32)
    with torch.no_grad():
        lin.weight.mul_(-2.0)                                        # the packed copy must be remade
        torch.testing.assert_close(fast(x), lin(x), **F32)
    # with autograd on it is nn.Linear itself: bit-identical values and gradients
    y = fast(x)
    assert torch.equal(y, lin(x))
    y.square().sum().backward()
    g = lin.weight.grad.clone()
    lin.weight.grad = None
    lin(x).square().sum().backward()
    assert torch.equal(g, lin.weight.grad)
    # a copy packs its own weight; non-float32 input falls back
    twin = copy.deepcopy(fast)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), lin(x), **F32)
        assert not fast.gemm.applies(x.double())


@pytest.mark.parametrize("version", ["2.0.1", "1.13.1+cpu"])
def test_without_the_private_ops_every_layer_runs_plain_f_linear(version, monkeypatch):
    """Before ONEDNN_SINCE (or without the ops) the private oneDNN ops are never called: the packed
    path does not apply and the layers are bit-identical to nn.Linear / nn.Conv2d."""
    monkeypatch.setattr(torch, "__version__", version)
    assert fs._onednn_linear_ops() is None
    monkeypatch.setattr(fs, "_ONEDNN_LINEAR", None)
    torch.manual_seed(0)
    lin, x = nn.Linear(300, 70), torch.randn(9, 300)
    packed = fs.OneDNNLinear.of(lin)
    conv = fs.FCConv2d(16, 24, 3, padding=1).eval()
    conv.gemm = fs.PackedGemm()
    xc = torch.randn(2, 16, 7, 7)
    with torch.inference_mode():
        assert not packed.gemm.applies(x)
        assert torch.equal(packed(x), lin(x))
        torch.testing.assert_close(conv(xc), nn.functional.conv2d(xc, conv.weight, conv.bias, 1, 1), **F32)


@needs_onednn
@pytest.mark.parametrize("k,p,s,x_cl", [(6, 0, 1, True), (6, 0, 1, False), (3, 1, 2, True), (1, 0, 1, True)])
def test_packed_fcconv_equals_the_convolution(k, p, s, x_cl):
    """fc6/fc7 with oneDNN's GEMM equal F.conv2d, in both column orders, and switching the input's
    memory format between calls repacks in the other order (never reuses a stale packing)."""
    torch.manual_seed(0)
    m = fs.FCConv2d(16, 24, k, padding=p, stride=s).eval()
    m.gemm = fs.PackedGemm()
    fmts = [torch.channels_last, torch.contiguous_format] if x_cl else [torch.contiguous_format, torch.channels_last]
    x = torch.randn(2, 16, 13, 11)
    with torch.inference_mode():
        ref = nn.functional.conv2d(x, m.weight, m.bias, s, p)
        for fmt in fmts + fmts:
            torch.testing.assert_close(m(x.contiguous(memory_format=fmt)), ref, **F32)


@needs_onednn
def test_onednn_gemm_copies_and_keeps_every_output():
    model = classifiers.vgg16_standin(width=0.0625, crop=64).eval()
    net = cv.convolutionalize(model).eval()
    fast_clf, fast_net = fs.onednn_gemm(model), fs.onednn_gemm(net)
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear)), "original untouched"
    assert any(isinstance(m, fs.OneDNNLinear) for m in fast_clf.modules())
    assert all(m.gemm is not None for m in fast_net.modules() if isinstance(m, fs.FCConv2d))
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(fast_net(x), net(x), **F32)
        torch.testing.assert_close(fast_clf(x[..., :64, :64]), model(x[..., :64, :64]), **F32)


# ----------------------------------------------------------------------------- the windowed upsampling
def test_windowed_upsampling_is_exact_and_only_inside_its_block():
    """The final upsampling computed on the cells that reach the image (as two matrix products per
    channel, for the fixed bilinear one) = upsample everything with the transposed convolution, crop:
    the same sums in another order, so equal to float rounding. Outside the block the FCN is plain."""
    torch.manual_seed(0)
    standin = classifiers.vgg16_standin(width=1 / 16, crop=64).eval()
    for variant in ("32s", "16s", "8s", "pool4"):
        m = transplant.fcn_from_classifier(standin, variant).eval()
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name.startswith("score"):
                    p.normal_(0, 0.1)
        x = torch.randn(2, 3, 61, 90)
        keys = m.state_dict().keys()
        with torch.no_grad():
            slow = m(x)
            with fs.windowed_upsampling(m) as inside:
                assert type(inside) is fs.WindowedFCN and inside.state_dict().keys() == keys
                fast = m(x)
            assert type(m) is models.FCN
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    holder = nn.ModuleList([m])                       # FCNs inside another module are swapped too
    with fs.windowed_upsampling(holder):
        assert type(holder[0]) is fs.WindowedFCN
    assert type(holder[0]) is models.FCN
