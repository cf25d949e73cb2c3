"""fcnlib.models held against the reference implementation's geometry, an independent computation of
the upsampling path, the transplanted classifier's own weights, and torch.fx's view of the graph."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnlib import classifiers, fast, paper, surgery, transplant
from fcnlib import receptive_field as rf
from fcnlib.train import TrainConfig, pixel_loss, train
from fcnlib.upsample import bilinear_weight

K = 21
ODD_SIZES = [(1, 1), (17, 33), (31, 64), (63, 95), (100, 37), (129, 131)]


@pytest.fixture(scope="module")
def reference_nets():
    """Full-width VGG16 FCNs, built without weights (meta tensors): geometry only."""
    with torch.device("meta"):
        return {v: getattr(transplant, "fcn" + v)() for v in ("32s", "16s", "8s")}


@pytest.fixture(scope="module")
def standin():
    """A random stand-in VGG16 (width 1/8, fc6 a Linear over the 2×2 grid of a 64-px crop)."""
    torch.manual_seed(0)
    return classifiers.vgg16_standin(width=0.125, crop=64).eval()


def randomize_scores(model, seed=0):
    """Give the zero-initialized score layers random weights (as if trained)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_children():
            if name.startswith("score"):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
    return model


# ---------------------------------------------------------------- geometry: the reference's crops
def test_reference_crop_offsets(reference_nets):
    """The reference's offsets — 19 / 5, 27 / 5, 9, 31 — derived from the coordinate maps."""
    assert reference_nets["32s"].crop_offsets() == {"final": 19}
    assert reference_nets["16s"].crop_offsets() == {"pool4": 5, "final": 27}
    assert reference_nets["8s"].crop_offsets() == {"pool4": 5, "pool3": 9, "final": 31}
    assert {f"fcn{v}": n.crop_offsets() for v, n in reference_nets.items()} == paper.crop_offsets()
    assert [s["stride"] for s in reference_nets["8s"].backbone_stages()] == [2, 4, 8, 16, 32]
    d = reference_nets["8s"].describe()
    assert d["conv1_padding"] == 100 and d["fc6_kernel"] == 7 and d["skip_padding"] == {}
    assert d["strides"]["score_fr"] == 32 and d["strides"]["fuse_pool4"] == 16 and d["strides"]["fuse_pool3"] == 8
    assert d["channels"] == {**d["channels"], "pool3": 256, "pool4": 512, "pool5": 512, "fc7": 4096}
    assert d["upsampling"]["upscore"] == {"kernel": 16, "stride": 8, "learned": False}
    assert d["upsampling"]["upscore2"] == {"kernel": 4, "stride": 2, "learned": True}


def test_crop_paths_give_the_crop_offsets(reference_nets, standin):
    """The crops' offsets, derived again from the module paths the net names: the ones it was built with."""
    nets = {**reference_nets, **{v: transplant.fcn_from_classifier(standin, v) for v in ("16s", "8s", "pool4")}}
    for v, m in nets.items():
        again = {k: rf.crop_offset(b, r) for k, (b, r) in m.crop_paths().items()}
        assert again == m.crop_offsets(), v


def test_whole_graph_is_aligned(reference_nets):
    """torch.fx's trace of the whole net agrees: skips aligned, output on the image's pixel grid."""
    net = reference_nets["8s"]
    assert rf.crop_offset_between(net, "score_pool4", "upscore2") == 5
    assert rf.crop_offset_between(net, "score_pool3", "upscore_pool4") == 9
    assert rf.coord_map_between(net, "x", "crop") == (1, 0)
    assert all(r.aligned for r in rf.receptive_fields(net))


@pytest.mark.parametrize("variant", ["32s", "16s", "8s", "pool4"])
def test_output_is_input_size_for_any_size(standin, variant):
    model = transplant.fcn_from_classifier(standin, variant).eval()
    randomize_scores(model)
    for h, w in ODD_SIZES:
        with torch.no_grad():
            y = model(torch.randn(1, 3, h, w))
        assert y.shape == (1, K, h, w), (variant, h, w)


def test_output_size_full_width_and_other_backbones():
    torch.manual_seed(0)
    nets = [transplant.fcn8s(width=1 / 16), transplant.fcn_alexnet(width=1 / 8), transplant.fcn_googlenet()]
    assert nets[1].crop_offsets()["final"] >= 0 and nets[1].upscore.kernel_size == (63, 63)  # AlexNet: odd kernel
    for net in nets:
        net.eval()
        for h, w in [(1, 1), (45, 77), (97, 96)]:
            with torch.no_grad():
                assert net(torch.randn(1, 3, h, w)).shape == (1, K, h, w), (net.arch, h, w)


def test_standin_geometry(standin):
    """fc6 is the stand-in's 2×2 grid: the coarse map's centre moves by 80 px and pool3 falls a cell
    short of the upsampled map; the skip score layers are padded, offsets still derived and ≥ 0."""
    m = transplant.fcn_from_classifier(standin, "8s")
    d = m.describe()
    assert d["fc6_kernel"] == 2
    assert all(o >= 0 for o in m.crop_offsets().values())
    assert rf.misaligned_sizes([(m.paths()["score_pool3"], m.paths()["upscore_pool4"])], range(1, 200)) == []


def test_equivalent_pad_puts_the_standin_on_the_reference_grid(standin, reference_nets):
    """A 2×2 fc6 needs 80 px less padding than a 7×7 one for the same coarse grid: with it the
    stand-in's score map and every final crop sit where the full-width reference's do."""
    pad = transplant.equivalent_pad(standin)
    assert pad == 20
    for v in ("32s", "16s", "8s"):
        m = transplant.fcn_from_classifier(standin, v, pad=pad)
        assert m.crop_offsets()["final"] == reference_nets[v].crop_offsets()["final"]
        assert m.map_geometry()["score_fr"] == reference_nets[v].map_geometry()["score_fr"]
    with torch.device("meta"):
        import torchvision
        assert transplant.equivalent_pad(torchvision.models.vgg16()) == 100


@pytest.mark.parametrize("pad", [100, 20])
def test_padded_skip_cells_never_reach_the_image(standin, pad):
    """The zero-padded cells of a skip's score map lie in conv1's padding: whatever they hold, the
    output on the image does not change."""
    m = randomize_scores(transplant.fcn_from_classifier(standin, "8s", pad=pad)).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        ref = m(x)

        def ring(module, inputs, out):
            p = module.padding[0]
            out = out.clone()
            if p:
                inner = out[..., p:-p, p:-p].clone()
                out.fill_(1e3)
                out[..., p:-p, p:-p] = inner
            return out
        hooks = [getattr(m, n).register_forward_hook(ring) for n in ("score_pool4", "score_pool3")]
        y = m(x)
        for h in hooks:
            h.remove()
    assert torch.equal(y, ref)


# ---------------------------------------------------------------- initialization and surgery
def test_transplant_copies_the_classifier(standin):
    m = transplant.fcn_from_classifier(standin, "32s")
    assert bool(m.transplanted) and m.source
    fc6, fc7 = m.fc.fc6, m.fc.fc7
    lin = [l for l in standin.classifier if isinstance(l, nn.Linear)]
    assert torch.equal(fc6.weight.flatten(1), lin[0].weight) and torch.equal(fc7.weight.flatten(1), lin[1].weight)
    convs_fcn = [l for s in (m.to_pool3, m.to_pool4, m.to_pool5) for l in s if isinstance(l, nn.Conv2d)]
    convs_cls = [l for l in standin.features if isinstance(l, nn.Conv2d)]
    assert len(convs_fcn) == len(convs_cls) == 13
    assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) for a, b in zip(convs_fcn, convs_cls))
    assert convs_fcn[0].padding == (100, 100) and convs_cls[0].padding == (1, 1)   # the classifier is untouched
    assert all(p.ceil_mode for s in (m.to_pool3, m.to_pool4, m.to_pool5) for p in s if isinstance(p, nn.MaxPool2d))
    with torch.no_grad():
        convs_fcn[0].weight.add_(1)
    assert not torch.equal(convs_fcn[0].weight, convs_cls[0].weight)               # copies, not shared


def test_transplanted_fc_layers_compute_the_classifier(standin):
    """On a crop of the classifier's native size, fc7 at the cell that sees exactly that crop equals
    the classifier's fc7 (the convolutionalization is the lesson of notebook 01; here: not broken)."""
    m = transplant.fcn_from_classifier(standin, "32s", pad=1).eval()  # torchvision's own padding
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        fc7 = m.fc(m.to_pool5(m.to_pool4(m.to_pool3(x))))        # (3, C, 1, 1)
        ref = standin.classifier[:5](torch.flatten(standin.features(x), 1))
    assert fc7.shape[-2:] == (1, 1)
    torch.testing.assert_close(fc7[..., 0, 0], ref, rtol=1e-4, atol=1e-5)


def test_new_fcn_is_zero_and_upsamplings_are_bilinear(standin):
    m = transplant.fcn_from_classifier(standin, "8s")
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert not getattr(m, name).weight.any() and not getattr(m, name).bias.any()
    with torch.no_grad():
        assert not m(torch.randn(1, 3, 40, 40)).any()   # all zeros at step 0: expected, not a bug
    assert not m.upscore.weight.requires_grad                                   # final: fixed
    assert m.upscore2.weight.requires_grad and m.upscore_pool4.weight.requires_grad  # 2×: learned
    assert torch.equal(m.upscore2.weight, bilinear_weight(K, 4))
    z = torch.randn(2, K, 3, 4)
    torch.testing.assert_close(m.upscore(z), F.conv_transpose2d(z, bilinear_weight(K, 16), stride=8))


@pytest.mark.parametrize("upgrade", ["16s", "8s"])
def test_staged_start_leaves_predictions_unchanged(standin, upgrade):
    """A new skip starts at zero: at step 0 the fused map is exactly the parent's coarse map
    upsampled 2× by the bilinear upscore2 — the parent's scores, unmodified (§4.2). The final output
    then differs from the parent's only by bilinear interpolation order (×2 then ×16 vs ×32):
    within a small bound, and the predicted classes agree almost everywhere."""
    torch.manual_seed(1)
    parent = randomize_scores(transplant.fcn_from_classifier(standin, "32s"), seed=3)
    if upgrade == "8s":
        parent = randomize_scores(surgery.fcn16s_from(parent), seed=4)
        child = surgery.fcn8s_from(parent)
        fused, coarse, up = "fuse_pool3", "fuse_pool4", "upscore_pool4"
    else:
        child = surgery.fcn16s_from(parent)
        fused, coarse, up = "fuse_pool4", "score_fr", "upscore2"
    parent.eval(), child.eval()
    x = torch.randn(3, 3, 64, 72)
    with torch.no_grad():
        pm, cm = parent.maps(x), child.maps(x)
        independent = F.conv_transpose2d(pm[coarse], bilinear_weight(K, 4), stride=2)
    assert torch.equal(cm[coarse], pm[coarse])          # the parent's scores, bit for bit
    assert torch.equal(cm[fused], cm[up]) and torch.equal(cm[fused], independent)   # the skip adds 0
    diff = (cm["final"] - pm["final"]).abs().max().item()
    scale = pm["final"].abs().max().item()
    assert 0 < diff < 0.25 * scale
    agree = (cm["final"].argmax(1) == pm["final"].argmax(1)).float().mean().item()
    assert agree > 0.9


def test_staged_training_moves_only_what_it_should(standin):
    from fcnlib import data
    X, Y = data.EmbeddedScenes("train", n=4, size=48).tensors()
    m = surgery.freeze_backbone(transplant.fcn_from_classifier(standin, "32s"))
    assert surgery.trainable(m) == ["score_fr.weight", "score_fr.bias"]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    train(m, (X, Y), TrainConfig(iters=2, batch_size=2, lr=1e-2), progress=False)
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"score_fr.weight", "score_fr.bias"}
    m16 = surgery.fcn16s_from(m)   # the child of a fixed net trains everything but the final upsampling
    assert "to_pool3.0.weight" in surgery.trainable(m16) and "upscore2.weight" in surgery.trainable(m16)
    assert "upscore.weight" not in surgery.trainable(m16)
    p4 = surgery.pool4_only_from(m)
    assert not hasattr(p4, "score_fr") and p4.describe()["strides"]["score_pool4"] == 16
    assert len(p4.to_pool5) == 0 and len(p4.fc) == 0       # no fc path at all
    loss = pixel_loss(p4(X[:2]), Y[:2])
    loss.backward()
    assert p4.score_pool4.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- "why are all outputs zero?"
def test_check_transplanted_catches_an_empty_backbone(standin):
    torch.manual_seed(0)
    fresh = transplant.fcn32s(width=1 / 16)                 # weights=None: nothing transplanted
    with pytest.raises(transplant.NotTransplantedError, match="all outputs zero"):
        transplant.check_transplanted(fresh)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        report = transplant.check_transplanted(fresh, error=False)
    assert not report["transplanted"] and any("transplanted" in str(x.message) for x in w)
    good = transplant.fcn_from_classifier(standin, "32s")
    report = transplant.check_transplanted(good)
    assert report["transplanted"] and report["fc7_varies"] and report["outputs_all_zero"]
    # the flag travels with the weights (checkpoints): loading them into a fresh net fixes it
    other = transplant.fcn_from_classifier(classifiers.vgg16_standin(width=0.125, crop=64), "32s")
    other.transplanted.fill_(False)
    other.load_state_dict(good.state_dict())
    assert transplant.check_transplanted(other)["transplanted"]
    # a backbone that is there but dead (e.g. zeroed weights) is caught by the probe
    with torch.no_grad():
        for p in good.fc.parameters():
            p.zero_()
    with pytest.raises(transplant.NotTransplantedError, match="dead"):
        transplant.check_transplanted(good)


# ---------------------------------------------------------------- inference path
def test_optimize_for_inference_matches_eager(standin, monkeypatch):
    m = randomize_scores(transplant.fcn_from_classifier(standin, "8s")).eval()
    x = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        ref = m(x)
    opt = fast.optimize_for_inference(m, "cpu", compile=False)
    torch.testing.assert_close(opt(x), ref, rtol=1e-4, atol=1e-5)

    def broken(*a, **k):
        raise RuntimeError("no compiler here")
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile is unavailable"):
        fb = fast.optimize_for_inference(m, "cpu")
    torch.testing.assert_close(fb(x), ref, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(torch, "__version__", "2.0.1")          # before Inductor's freezing: never compiled
    with pytest.warns(UserWarning, match="older than 2.1"):
        old = fast.optimize_for_inference(m, "cpu")
    assert not isinstance(old.net, fast._Fallback)
    torch.testing.assert_close(old(x), ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- maps, and staged training's checkpoints
def test_maps_and_their_geometry(standin):
    m = randomize_scores(transplant.fcn_from_classifier(standin, "8s")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = m.maps(x)
        assert torch.equal(maps["final"], m(x))
    assert {"score_fr", "fuse_pool4", "fuse_pool3", "final"} <= set(maps)
    geo = m.map_geometry()
    assert [geo[k][0] for k in ("score_fr", "fuse_pool4", "fuse_pool3", "final")] == [32, 16, 8, 1]
    assert geo["final"][1] == 0                                   # the output sits on the pixels
    for k in ("score_fr", "fuse_pool4", "fuse_pool3"):             # every fused map: same centre as its branches
        s, c = geo[k]
        assert maps[k].shape[-1] * s + c >= 63 and c <= 0          # and it covers the image
    from fcnlib import viz
    on_image = viz.map_on_image(maps["score_fr"][0], *geo["score_fr"], (64, 64))
    assert on_image.shape == (K, 64, 64)


def test_coarse_net_is_the_score_fr_path(standin):
    """FCN.coarse() is the stride-32 net §3.2's tricks take: the same score_fr as the forward pass,
    the same parameters (not copies), and a geometry of stride 32 from stitch's own composition."""
    from fcnlib import stitch
    m = randomize_scores(transplant.fcn_from_classifier(standin, "8s")).eval()
    x = torch.randn(2, 3, 64, 64)
    net = m.coarse()
    with torch.no_grad():
        assert torch.equal(net(x), m.maps(x)["score_fr"])
    assert net[-1] is m.score_fr and net[0] is m.to_pool3
    assert stitch.geometry(net).jump == m.map_geometry()["score_fr"][0] == 32
    with pytest.raises(ValueError, match="pool4 control"):
        transplant.fcn_from_classifier(standin, "pool4").coarse()


def test_staged_stage_resumes_from_its_checkpoint(standin, tmp_path):
    from fcnlib import data, staged
    X, Y = data.EmbeddedScenes("train", n=4, size=48).tensors()
    stage = staged.Stage("fcn32s", lambda _: transplant.fcn_from_classifier(standin, "32s", pad=20),
                         TrainConfig(iters=3, batch_size=2, lr=1e-3, ckpt_every=1))
    first = staged.run_stage(stage, None, (X, Y), (X, Y), num_classes=K, ckpt_dir=tmp_path, data_id="t",
                             progress=False)
    again = staged.run_stage(stage, None, (X, Y), (X, Y), num_classes=K, ckpt_dir=tmp_path, data_id="t",
                             progress=False)
    assert not first.resumed and again.resumed and again.history.loss == first.history.loss
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    child = staged.Stage("fcn16s", surgery.fcn16s_from, TrainConfig(iters=1, batch_size=2, lr=1e-4), parent="fcn32s")
    r = staged.run_stage(child, first, (X, Y), (X, Y), num_classes=K, ckpt_dir=tmp_path, data_id="t", progress=False)
    assert r.model.variant == "16s" and r.key != first.key and r.extra["start_step"] == 3
    assert staged.paper_learning_rates(1e-4) == [1e-4, 1e-6, 1e-8]


# ---------------------------------------------------------------- non-finite input
def test_non_finite_input_is_refused(standin):
    """A NaN pixel used to come out as background over its whole receptive field, silently."""
    m = randomize_scores(transplant.fcn_from_classifier(standin, "16s")).eval()
    x = torch.randn(2, 3, 40, 48)
    x[1, 0, 5, 7] = float("nan")
    x[0, 2, 30, 1] = float("inf")
    with torch.no_grad():
        for run in (m, m.maps):
            with pytest.raises(ValueError, match=r"(?s)2 non-finite.*\(2, 3, 40, 48\).*normaliz"):
                run(x)
        assert m(torch.nan_to_num(x)).isfinite().all()


def test_channels_survive_surgery():
    """The widths describe() reports are the layers' own, before and after §4.2's surgery."""
    m32 = transplant.fcn32s(width=1 / 16)
    for m in (m32, surgery.fcn16s_from(m32), surgery.fcn8s_from(surgery.fcn16s_from(m32))):
        assert m.channels == {"pool3": 16, "pool4": 32, "pool5": 32, "fc7": 256}, m.variant
