"""Pretrained stand-in classifiers: the course's offline substitute for ImageNet weights (Section 4.1).

``pretrained("vgg16")`` returns the VGG16-shaped stand-in trained on ``ObjectCrops`` (21 classes:
20 object classes and background). The weights ship in data/pretrained/ (about 1.3 MB each, float16) with
their SHA-256 in data/pretrained/SHA256SUMS; they are regenerated, deterministically for a given
machine and thread count, by

    python -m fcnlib.pretrain --arch vgg16 alexnet --out data/pretrained

If the shipped file is missing or its checksum does not match, the stand-in is retrained once
(a few minutes on a CPU) and cached under data/cache/pretrained/.

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
from .data import ObjectCrops
from .train import batch_indices, pixel_loss

SPECS = {
    "vgg16": {"model": {"width": 0.125, "crop": 64}, "n_train": 4200, "iters": 2500, "batch": 64, "lr": 1e-3},
    "alexnet": {"model": {"width": 0.25, "crop": 127, "fc": 512}, "n_train": 4200, "iters": 2000, "batch": 64,
                "lr": 1e-3},
}


def shipped_dir() -> Path:
    return paths.data_dir() / "pretrained"


def _checksums() -> dict:
    f = shipped_dir() / "SHA256SUMS"
    if not f.exists():
        return {}
    return {name: digest for digest, name in (l.split() for l in f.read_text().splitlines() if l.strip())}


def _spec(arch: str) -> dict:
    if arch not in SPECS:
        raise ValueError(f"unknown stand-in {arch!r}: use one of {', '.join(SPECS)}")
    return SPECS[arch]


def train_standin(arch: str, seed: int = 0, progress: bool = True):
    """Train the stand-in ``arch`` on the object crops; return (model, info)."""
    from tqdm.auto import tqdm
    spec = _spec(arch)
    crop = spec["model"]["crop"]
    X, Y = ObjectCrops("train", n=spec["n_train"], size=crop, seed=seed).tensors()
    Xv, Yv = ObjectCrops("val", n=420, size=crop, seed=seed).tensors()
    torch.manual_seed(seed)
    model = classifiers.build(arch, **spec["model"])
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(spec["iters"] * 0.8)], 0.1)
    t0 = time.perf_counter()
    model.train()
    for step in tqdm(range(spec["iters"]), desc=f"pretrain {arch}", disable=not progress):
        idx = batch_indices(len(X), spec["batch"], seed, step)
        loss = pixel_loss(model(X[idx]), Y[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining {arch}: loss {loss.item()} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    _round_to_half_(model)  # the weights are shipped in float16: evaluate what is shipped
    info = {"arch": arch, "spec": spec, "seed": seed, "train_time_s": round(time.perf_counter() - t0, 1),
            "val_accuracy": classifiers.accuracy(model, Xv, Yv), "final_loss": loss.item(),
            "params": classifiers.count_params(model), "torch": torch.__version__,
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


def load(arch: str, device="cpu", retrain: bool = True, progress: bool = True):
    """The pretrained stand-in ``arch`` in eval mode on ``device`` (and its info dict as ``.info``)."""
    spec = _spec(arch)
    name = f"standin-{arch}.pt"
    shipped = shipped_dir() / name
    cached = paths.cache_dir() / "pretrained" / name
    source = None
    if shipped.exists() and _checksums().get(name) == paths.sha256(shipped):
        source = shipped
    elif cached.exists():
        source = cached
    elif not retrain:
        raise FileNotFoundError(f"no pretrained stand-in {name} in {shipped_dir()} (or its checksum does not "
                                f"match SHA256SUMS): run `python -m fcnlib.pretrain --arch {arch}`")
    if source is None:
        model, info = train_standin(arch, progress=progress)
        save(model, info, cached.parent)
    else:
        state = torch.load(source, map_location="cpu", weights_only=False)
        model = classifiers.build(arch, **spec["model"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in state["state_dict"].items()})
        info = state["info"]
    model.info = info
    return model.to(device).eval()


pretrained = load


def main(argv=None):
    p = argparse.ArgumentParser(description="(Re)train the stand-in classifiers and write their weights.")
    p.add_argument("--arch", nargs="+", default=list(SPECS), choices=list(SPECS))
    p.add_argument("--out", type=Path, default=shipped_dir())
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for arch in args.arch:
        model, info = train_standin(arch)
        path = save(model, info, args.out)
        sums = _checksums() if args.out == shipped_dir() else {}
        sums[path.name] = paths.sha256(path)
        paths.atomic_write_text(args.out / "SHA256SUMS", "".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
        paths.atomic_write_text(args.out / f"standin-{arch}.json", json.dumps(info, indent=1))
        print(json.dumps(info))


if __name__ == "__main__":
    main()
