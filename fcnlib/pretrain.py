"""Pretrained stand-in classifiers: the course's offline substitute for ImageNet weights (Section 4.1).

``pretrained("vgg16")`` returns the VGG16-shaped stand-in trained on ``ObjectCrops`` (49 classes:
background and 48 object classes — the scenes' 20 and 28 more, as ImageNet has more classes than VOC —
among partly visible distractors). The weights ship in data/pretrained/ (1.5–1.7 MB each, float16) with
their SHA-256 in data/pretrained/SHA256SUMS (``FCN_DATA`` moves data/). Every load checks the file
against SHA256SUMS and reads it with ``torch.load(..., weights_only=True)``: no code is run from it.

Nothing is ever retrained implicitly, and nothing is cached. A missing file (or SHA256SUMS) raises
:class:`fcnlib.tiers.MissingAssetError`, a file that does not match its checksum, is not listed, or
cannot be read raises :class:`CorruptWeightsError`; both name the file and the fix: restore the
shipped files with ``git checkout -- data/pretrained/``, or regenerate them (about 31 minutes for
VGG16 on one thread and 3 for AlexNet on two, on this course's 2-core CPU), deterministically for a
given machine, torch version, seed and thread count (``THREADS``: the shipped files'), with

    make pretrain        # = python -m fcnlib.pretrain --arch vgg16 alexnet --out data/pretrained

which writes each weights file, its JSON info and the updated SHA256SUMS, each atomically.

The pretraining recipe is not the paper's lesson: it uses Adam, which reaches a useful classifier in
a few CPU-minutes where plain SGD on a VGG without batch norm needs far longer. Fine-tuning the FCNs
(``fcnlib.train``) follows the paper's SGD recipe.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import classifiers, paths
from .data import PRETRAIN_CLASSES, ObjectCrops, normalize
from .tiers import MissingAssetError
from .train import batch_indices, pixel_loss

_CLASSES = len(PRETRAIN_CLASSES)  # 49: background and 48 object classes
# crops: the object's radius as a fraction of the crop (96 px: 19-45 px, the scenes' objects, fcnlib.world),
# up to ±15% off centre, on top of partly visible distractors in 60% of crops, one crop in 4 background
_CROPS = {"radius": (0.2, 0.47), "jitter": 0.15, "clutter": 0.6, "background_every": 4}
SPECS = {
    "vgg16": {"model": {"width": 0.125, "crop": 96, "num_classes": _CLASSES}, "crops": _CROPS, "n_train": 60000,
              "iters": 12000, "batch": 32, "lr": 1e-3},
    "alexnet": {"model": {"width": 0.25, "crop": 127, "fc": 512, "num_classes": _CLASSES},
                "crops": {**_CROPS, "radius": (0.15, 0.35)}, "n_train": 20000, "iters": 6000, "batch": 32,
                "lr": 1e-3},
}
# the thread count each shipped file was trained with: its bytes depend on it (and on seed, machine, torch)
THREADS = {"vgg16": 1, "alexnet": 2}
SUMS = "SHA256SUMS"


class CorruptWeightsError(ValueError):
    """A stand-in's weights file does not match SHA256SUMS, is not listed there, or cannot be read."""


def shipped_dir() -> Path:
    return paths.data_dir() / "pretrained"


def _fix(arch: str) -> str:
    """What to do about a missing or broken file in :func:`shipped_dir`."""
    where = shipped_dir()
    fix = ("Restore the shipped files with `git checkout -- data/pretrained/`, or regenerate them "
           "(about 35 minutes on a 2-core CPU) with `make pretrain` "
           "(= `python -m fcnlib.pretrain --arch vgg16 alexnet --out data/pretrained`)")
    if where != paths.ROOT / "data" / "pretrained":  # FCN_DATA points elsewhere
        fix += (f"; for {where} (FCN_DATA), run `python -m fcnlib.pretrain --arch {arch} --out {where}`, "
                "or unset FCN_DATA")
    return fix + "."


def _checksums(directory: Path | None = None) -> dict:
    """``{file name: sha256}`` from ``directory``/SHA256SUMS (default :func:`shipped_dir`); {} if absent."""
    f = (shipped_dir() if directory is None else Path(directory)) / SUMS
    if not f.exists():
        return {}
    sums = {}
    for n, line in enumerate(f.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise CorruptWeightsError(f"{f}, line {n}: expected `<sha256>  <file name>`, found {line!r}")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()  # `sha256sum -b` marks names with '*'
    return sums


def verified_path(arch: str) -> Path:
    """The weights file of ``arch``, checked against SHA256SUMS; raise if it is missing or does not match."""
    _spec(arch)
    path = shipped_dir() / f"standin-{arch}.pt"
    sums_file = shipped_dir() / SUMS
    for f in (path, sums_file):
        if not f.exists():
            raise MissingAssetError(f"the pretrained stand-in {arch!r} needs {f}, which does not exist. "
                                    + _fix(arch))
    expected = _checksums().get(path.name)
    if expected is None:
        raise CorruptWeightsError(f"{path} is not listed in {sums_file}, so it cannot be verified. "
                                  + _fix(arch))
    actual = paths.sha256(path)
    if actual != expected:
        raise CorruptWeightsError(f"{path} does not match its checksum in {sums_file} (expected sha256 "
                                  f"{expected}, found {actual}): the file is damaged or was replaced. "
                                  + _fix(arch))
    return path


def _torch_load(path: Path):
    """``torch.load(path, weights_only=True)``, allowing ``TorchVersion``: the shipped files' info
    records ``torch.__version__``, a ``str`` subclass (files written since store a plain ``str``)."""
    from torch.torch_version import TorchVersion
    allow = getattr(torch.serialization, "safe_globals", None)
    if allow is None:  # torch 2.4 has only the process-wide allow list
        torch.serialization.add_safe_globals([TorchVersion])
        return torch.load(path, map_location="cpu", weights_only=True)
    with allow([TorchVersion]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _plain(x):
    """``x`` with str subclasses (``TorchVersion``) turned into str and tuples into lists."""
    if isinstance(x, dict):
        return {_plain(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return str(x) if isinstance(x, str) else x


def _spec(arch: str) -> dict:
    if arch not in SPECS:
        raise ValueError(f"unknown stand-in {arch!r}: use one of {', '.join(SPECS)}")
    return SPECS[arch]


def mirror(X: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """Flip a random half of the batch left-right (a function of seed and step, like the batch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step + 7)
    flip = torch.rand(len(X), generator=g) < 0.5
    return torch.where(flip[:, None, None, None], X.flip(-1), X)


def train_standin(arch: str, seed: int = 0, progress: bool = True, iters: int | None = None):
    """Train the stand-in ``arch`` on the object crops; return (model, info).

    ``iters`` overrides the spec's number of steps (for tests; the shipped weights use the spec's).
    """
    from tqdm.auto import tqdm
    spec = _spec(arch)
    iters = spec["iters"] if iters is None else iters
    crop = spec["model"]["crop"]
    crops = spec.get("crops", {})
    X, Y = ObjectCrops("train", n=spec["n_train"], size=crop, seed=seed, **crops).uint8_tensors()  # (N, 3, S, S)
    Xv, Yv = ObjectCrops("val", n=2 * _CLASSES * 8, size=crop, seed=seed, **crops).tensors()
    torch.manual_seed(seed)
    model = classifiers.build(arch, **spec["model"])
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(iters * 0.8)], 0.1)
    t0 = time.perf_counter()
    model.train()
    for step in tqdm(range(iters), desc=f"pretrain {arch}", disable=not progress):
        idx = batch_indices(len(X), spec["batch"], seed, step)
        loss = pixel_loss(model(normalize(mirror(X[idx], seed, step))), Y[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining {arch}: loss {loss.item()} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    _round_to_half_(model)  # the weights are shipped in float16: evaluate what is shipped
    info = {"arch": arch, "spec": spec, "seed": seed, "iters": iters,
            "train_time_s": round(time.perf_counter() - t0, 1),
            "val_accuracy": classifiers.accuracy(model, Xv, Yv), "final_loss": loss.item(),
            "params": classifiers.count_params(model), "torch": str(torch.__version__),
            "threads": torch.get_num_threads()}
    model.eval()
    return model, info


def _round_to_half_(model) -> None:
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def save(model, info, out: Path) -> Path:
    """Write the weights in float16 (half the size; the model was evaluated after that rounding)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"standin-{info['arch']}.pt"
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    paths.atomic_torch_save({"state_dict": state, "info": info}, path)
    return path


def pretrained(arch: str, device="cpu"):
    """The pretrained stand-in ``arch`` in eval mode on ``device`` (and its info dict as ``.info``).

    The file is checked against SHA256SUMS first (:func:`verified_path`); nothing is retrained or cached.
    """
    spec = _spec(arch)
    path = verified_path(arch)
    try:
        state = _torch_load(path)
        model = classifiers.build(arch, **_plain(state["info"]["spec"]["model"]))  # as the file was trained
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in state["state_dict"].items()})
        info = _plain(state["info"])
    except Exception as e:  # the checksum matched: the file was written so, or SPECS changed since
        raise CorruptWeightsError(f"{path} matches SHA256SUMS but cannot be read as the stand-in {arch!r} "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                                  + _fix(arch)) from e
    model.info = info
    return model.to(device).eval()



def main(argv=None):
    p = argparse.ArgumentParser(description="(Re)train the stand-in classifiers and write their weights, "
                                            "JSON info and SHA256SUMS (each file atomically).")
    p.add_argument("--arch", nargs="+", default=list(SPECS), choices=list(SPECS))
    p.add_argument("--out", type=Path, default=None, help="default: data/pretrained (or $FCN_DATA/pretrained)")
    p.add_argument("--threads", type=int, default=None,
                   help="default: the shipped files' (THREADS); the weights depend on it (and on seed, machine, torch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar, no info printed")
    args = p.parse_args(argv)
    out = args.out if args.out is not None else shipped_dir()
    for arch in args.arch:
        torch.set_num_threads(args.threads or THREADS[arch])
        model, info = train_standin(arch, seed=args.seed, progress=not args.quiet)
        path = save(model, info, out)
        paths.atomic_write_text(out / f"standin-{arch}.json", json.dumps(info, indent=1))
        sums = _checksums(out)  # keep the other files' entries
        sums[path.name] = paths.sha256(path)
        paths.atomic_write_text(out / SUMS, "".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
        if not args.quiet:
            print(json.dumps(info))


if __name__ == "__main__":
    main()
