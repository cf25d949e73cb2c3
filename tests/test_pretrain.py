"""The stand-ins' weight files: verified against SHA256SUMS on every load, never retrained implicitly,
loaded with ``weights_only=True``; and the regeneration command (on a tiny spec, in seconds)."""
import shutil

import pytest
import torch

from fcnlib import paths, pretrain, tiers

SHIPPED = paths.ROOT / "data" / "pretrained"

# A few iterations on a few crops: seconds, not an hour. Only the recipe is exercised, not its quality.
TINY = {"vgg16": {"model": {"width": 0.125, "crop": 64, "num_classes": 49}, "crops": {"jitter": 0.15},
                  "n_train": 42, "iters": 3, "batch": 16, "lr": 1e-3}}


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A data directory (``FCN_DATA``) holding a copy of the shipped pretrained/ and reference/ folders;
    no ``FCN_CACHE``, and a ``train_standin`` that fails the test if anything retrains."""
    root = tmp_path / "data"
    shutil.copytree(SHIPPED, root / "pretrained")
    shutil.copytree(paths.ROOT / "data" / "reference", root / "reference")
    monkeypatch.setenv("FCN_DATA", str(root))
    monkeypatch.delenv("FCN_CACHE", raising=False)

    def no_retraining(*args, **kwargs):
        raise AssertionError("load() retrained the stand-in instead of reporting the broken file")
    monkeypatch.setattr(pretrain, "train_standin", no_retraining)
    return root


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(pretrain, "SPECS", TINY)
    return TINY


def flip_byte(path, at=-100):
    payload = bytearray(path.read_bytes())
    payload[at] ^= 0xFF
    path.write_bytes(bytes(payload))


def state_dict_of(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# --- defect 1: a broken shipped file raises; nothing is retrained or read from a cache ---

def test_checksum_mismatch_raises_and_never_retrains_or_uses_a_cache(data, tmp_path, monkeypatch):
    weights = data / "pretrained" / "standin-vgg16.pt"
    expected = paths.sha256(weights)
    # a copy in the old cache location must not be trusted in place of the shipped file
    cache = tmp_path / "cache"
    (cache / "pretrained").mkdir(parents=True)
    shutil.copy(weights, cache / "pretrained" / weights.name)
    monkeypatch.setenv("FCN_CACHE", str(cache))
    flip_byte(weights)
    actual = paths.sha256(weights)
    with pytest.raises(ValueError, match="does not match") as err:
        pretrain.pretrained("vgg16")
    msg = str(err.value)
    assert isinstance(err.value, pretrain.CorruptWeightsError)
    assert str(weights) in msg and expected in msg and actual in msg
    assert "git checkout -- data/pretrained/" in msg and "make pretrain" in msg
    assert "python -m fcnlib.pretrain --arch vgg16" in msg


def test_missing_weights_file_raises_missing_asset_error(data):
    (data / "pretrained" / "standin-vgg16.pt").unlink()
    with pytest.raises(FileNotFoundError, match="standin-vgg16.pt") as err:
        pretrain.pretrained("vgg16")
    assert isinstance(err.value, tiers.MissingAssetError)
    assert "git checkout -- data/pretrained/" in str(err.value) and "make pretrain" in str(err.value)
    assert not (data / "cache").exists()


def test_missing_sha256sums_or_entry_raises(data):
    sums = data / "pretrained" / "SHA256SUMS"
    sums.write_text("".join(l + "\n" for l in sums.read_text().splitlines() if "vgg16" not in l))
    with pytest.raises(ValueError, match="not listed in .*SHA256SUMS") as err:
        pretrain.pretrained("vgg16")
    assert "standin-vgg16.pt" in str(err.value) and "make pretrain" in str(err.value)
    pretrain.pretrained("alexnet")  # the other entry still verifies
    sums.unlink()
    with pytest.raises(tiers.MissingAssetError, match="SHA256SUMS"):
        pretrain.pretrained("alexnet")


def test_unreadable_file_with_matching_checksum_raises(data):
    weights = data / "pretrained" / "standin-vgg16.pt"
    weights.write_bytes(b"not a torch file")
    sums = data / "pretrained" / "SHA256SUMS"
    sums.write_text(f"{paths.sha256(weights)}  {weights.name}\n")
    with pytest.raises(ValueError, match="cannot be read") as err:
        pretrain.pretrained("vgg16")
    assert str(weights) in str(err.value) and "make pretrain" in str(err.value)


# --- defect 3: nothing creates the cache folder unless it writes there ---

def test_load_and_cache_dir_create_no_cache_folder(data, tmp_path, monkeypatch):
    model = pretrain.pretrained("vgg16")
    assert model.info["arch"] == "vgg16" and not model.training
    assert not (data / "cache").exists(), "load() created data/cache/"
    monkeypatch.setenv("FCN_CACHE", str(tmp_path / "elsewhere"))
    assert paths.cache_dir() == tmp_path / "elsewhere"
    assert not (tmp_path / "elsewhere").exists(), "paths.cache_dir() created the folder"


# --- defect 2: loads use weights_only=True, and the shipped files pass it ---

@pytest.mark.parametrize("arch", ["vgg16", "alexnet"])
def test_shipped_weights_load_with_weights_only(data, monkeypatch, arch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)
    monkeypatch.setattr(torch, "load", spy)
    model = pretrain.pretrained(arch)
    assert calls == [True]
    # the info holds plain values only (the shipped files recorded torch.__version__, a str subclass)
    assert type(model.info["torch"]) is str
    assert model.info["arch"] == arch and model.info["spec"] == pretrain._plain(pretrain.SPECS[arch])


# --- defect 4: the regeneration command, on a tiny spec ---

def test_regenerate_verify_and_detect_a_flipped_byte(tiny, tmp_path, monkeypatch):
    out = tmp_path / "data" / "pretrained"
    out.mkdir(parents=True)
    other = "0" * 64 + "  standin-alexnet.pt\n"  # an entry for another file must survive the rewrite
    (out / "SHA256SUMS").write_text(other)
    pretrain.main(["--arch", "vgg16", "--out", str(out), "--threads", "1", "--quiet"])
    weights = out / "standin-vgg16.pt"
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "standin-vgg16.json", "standin-vgg16.pt"]
    sums = (out / "SHA256SUMS").read_text()
    assert sums == other + f"{paths.sha256(weights)}  standin-vgg16.pt\n"
    # new files need no allow-listed class: info is plain JSON-able data
    saved = torch.load(weights, map_location="cpu", weights_only=True)
    assert type(saved["info"]["torch"]) is str and saved["info"]["spec"] == pretrain._plain(TINY["vgg16"])
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values() if v.is_floating_point())

    monkeypatch.setenv("FCN_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("FCN_CACHE", raising=False)
    monkeypatch.setattr(pretrain, "train_standin", lambda *a, **k: pytest.fail("load() retrained"))
    model = pretrain.pretrained("vgg16")
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved["state_dict"][k].to(v.dtype)), k
    assert not (tmp_path / "data" / "cache").exists()

    flip_byte(weights)
    with pytest.raises(pretrain.CorruptWeightsError, match="does not match") as err:
        pretrain.pretrained("vgg16")
    assert str(weights) in str(err.value)


def test_regeneration_is_deterministic(tiny, tmp_path):
    a, b, c = (tmp_path / x for x in "abc")
    for out, seed in ((a, "0"), (b, "0"), (c, "1")):
        pretrain.main(["--arch", "vgg16", "--out", str(out), "--threads", "1", "--seed", seed, "--quiet"])
    sa, sb, sc = (state_dict_of(d / "standin-vgg16.pt") for d in (a, b, c))
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "same seed and threads, different weights"
    assert not all(torch.equal(sa[k], sc[k]) for k in sa), "the seed is not used"
