"""Stand-in classifiers: torchvision's architectures, scaled; the shipped pretrained weights."""
import pytest
import torch
from torch import nn

from fcnlib import classifiers, paths, pretrain, tiers
from fcnlib.data import ObjectCrops


def test_vgg16_standin_keeps_torchvision_structure():
    m = classifiers.vgg16_standin(width=0.125, crop=64)
    convs = [x for x in m.features if isinstance(x, nn.Conv2d)]
    pools = [x for x in m.features if isinstance(x, nn.MaxPool2d)]
    assert len(convs) == 13 and len(pools) == 5
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.out_channels for c in convs][-1] == 64
    assert m.classifier[0].in_features == 64 * 2 * 2
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 21)


def test_alexnet_standin_grid():
    m = classifiers.alexnet_standin(width=0.25, crop=127)
    assert classifiers.alexnet_grid(224) == 6  # torchvision's AlexNet: fc6 sees a 6x6 grid
    k = classifiers.alexnet_grid(127)
    assert m.features(torch.zeros(1, 3, 127, 127)).shape[-1] == k
    assert m(torch.zeros(1, 3, 127, 127)).shape == (1, 21)
    with pytest.raises(ValueError, match="unknown stand-in"):
        classifiers.build("resnet")


@pytest.mark.parametrize("arch", ["vgg16", "alexnet"])
def test_shipped_weights_are_intact_and_trained(arch):
    shipped = pretrain.shipped_dir() / f"standin-{arch}.pt"
    if not shipped.exists():
        pytest.skip(f"{shipped.name} is not shipped yet")
    assert pretrain._checksums()[shipped.name] == paths.sha256(shipped)
    model = pretrain.pretrained(arch)
    spec = pretrain.SPECS[arch]
    X, Y = ObjectCrops("val", n=49 * 4, size=spec["model"]["crop"], **spec["crops"]).tensors()
    acc = classifiers.accuracy(model, X, Y)
    # 49 classes (chance 2%), objects cut by the border and distractors: the shipped weights reach ~80%
    assert acc > 0.6, f"the shipped {arch} stand-in classifies only {acc:.0%} of val crops"


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_DATA", str(tmp_path))
    with pytest.raises(tiers.MissingAssetError, match="python -m fcnlib.pretrain --arch vgg16") as err:
        pretrain.pretrained("vgg16")
    assert str(tmp_path / "pretrained" / "standin-vgg16.pt") in str(err.value)
    assert "git checkout -- data/pretrained/" in str(err.value) and "make pretrain" in str(err.value)
    assert not (tmp_path / "cache").exists()
