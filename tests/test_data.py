"""The embedded dataset: determinism, VOC conventions, the interface real loaders share."""
import math
import subprocess
import sys

import pytest
import torch

from fcnlib import data


def test_same_seed_same_bytes_in_another_process():
    img, lab = data.render(42, 48)
    code = ("import torch, sys; from fcnlib import data; i, l = data.render(42, 48); "
            "sys.stdout.buffer.write(i.numpy().tobytes() + l.numpy().tobytes())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert out == img.numpy().tobytes() + lab.numpy().tobytes()


def test_different_seeds_and_splits_differ():
    a = data.EmbeddedScenes("train", n=2, size=32).raw(0)[0]
    b = data.EmbeddedScenes("val", n=2, size=32).raw(0)[0]
    c = data.EmbeddedScenes("train", n=2, size=32, seed=1).raw(0)[0]
    assert not torch.equal(a, b) and not torch.equal(a, c)


def test_voc_conventions():
    ds = data.EmbeddedScenes("train", n=30, size=64)
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert y.shape == (64, 64) and y.dtype == torch.int64
    _, Y = ds.tensors()
    values = set(torch.unique(Y).tolist())
    assert values <= set(range(21)) | {255}
    assert 255 in values and 0 in values
    bg = (Y == 0).sum() / (Y != 255).sum()
    assert 0.6 < bg < 0.95, "scenes should be mostly background, like VOC (about 3/4)"


def test_void_band_marks_exactly_the_label_boundaries():
    lab = torch.zeros(9, 9, dtype=torch.uint8)
    lab[3:6, 3:6] = 4
    out = data.void_band(lab, 1)
    # pixels whose 3x3 neighbourhood holds two labels: the 5x5 ring around the 3x3 square's centre
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[2:7, 2:7] = True
    expected[4, 4] = False
    assert torch.equal(out == 255, expected)
    assert out[4, 4] == 4 and out[0, 0] == 0


def test_object_crops_have_every_class_and_background():
    crops = data.ObjectCrops("train", n=64, size=32)
    X, Y = crops.tensors()
    assert X.shape == (64, 3, 32, 32)
    assert sorted(set(Y.tolist())) == list(range(49))       # more categories than the scenes, as ImageNet
    assert (Y == 0).sum() == 8                               # one crop in eight is background
    assert data.PRETRAIN_CLASSES[:21] == data.CLASSES        # the scene classes keep their indices


def test_object_crops_are_deterministic_and_uint8():
    crops = data.ObjectCrops("val", n=16, size=48, jitter=0.15, background_every=4)
    assert [crops.label(i) for i in range(6)] == [0, 1, 2, 3, 0, 4]
    a, b = crops.raw(5), data.ObjectCrops("val", n=16, size=48, jitter=0.15, background_every=4).raw(5)
    assert a.dtype == torch.uint8 and a.shape == (3, 48, 48) and torch.equal(a, b)


def test_new_shapes_and_textures_cover_what_they_should():
    yy, xx = torch.meshgrid(torch.arange(64) - 31.5, torch.arange(64) - 31.5, indexing="ij")
    area = {s: data._shape_mask(s, xx, yy, 20.0).float().mean().item() for s in data.PRETRAIN_SHAPES}
    disk = math.pi * 20 ** 2 / 64 ** 2
    assert abs(area["disk"] - disk) < 0.01
    assert abs(area["ellipse"] - 0.55 * disk) < 0.01        # semi-axes r and 0.55 r
    assert area["crescent"] < 0.5 * disk and area["star"] < disk
    for t in data.PRETRAIN_TEXTURES[1:]:                       # every texture but solid paints a second colour
        share = data._texture_mask(t, xx, yy, 4.0).float().mean().item()
        assert 0.1 < share < 0.9, (t, share)


def test_colour_alone_does_not_identify_a_class():
    # the same class takes different colours in different samples
    colours = []
    crops = data.ObjectCrops("train", n=400, size=32)
    for i in [i for i in range(400) if crops.label(i) == 1][:6]:  # class 1 (disk-solid) in six samples
        x, y = crops[i]
        assert y == 1
        colours.append(data.denormalize(x)[:, 16, 16])
    spread = torch.stack(colours).std(0).max()
    assert spread > 0.1


def test_bad_input_messages():
    with pytest.raises(ValueError, match="unknown split"):
        data.EmbeddedScenes("training")
    with pytest.raises(ValueError, match="RGB"):
        data.normalize(torch.zeros(1, 8, 8, dtype=torch.uint8))
    with pytest.raises(IndexError):
        data.EmbeddedScenes("train", n=2, size=16)[5]
