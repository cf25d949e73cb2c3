"""PASCAL VOC 2011 segmentation read from the devkit's own layout (the ``paper`` tier's data).

The paper evaluates on "a subset of PASCAL VOC 2011 val": seg11valid, the 736 val images not in
SBD's training set (data/reference/pascal/seg11valid.txt, from the authors' repository). The devkit
unpacks to ``VOCdevkit/VOC2011/{JPEGImages,SegmentationClass}``; it is looked for under
``fcnlib.paths.datasets_dir()`` (``FCN_DATASETS``, default data/datasets) and never downloaded.

Labels are palette PNGs whose pixel values *are* the class indices (0 background, 1–20 the
classes, 255 void along object outlines and on "difficult" objects): read them as indices
(``np.array(Image.open(p))`` on mode ``'P'``), never through ``.convert("RGB")``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import paths
from .data import MEAN, STD, VOID, normalize
from .tiers import MissingAssetError

NUM_CLASSES = 21
HOW = ("Unpack the PASCAL VOC 2011 train/val archive (VOCtrainval_25-May-2011.tar) so that "
       "VOCdevkit/VOC2011/SegmentationClass/<id>.png and JPEGImages/<id>.jpg exist under the "
       "datasets folder (set FCN_DATASETS to use another folder).")


def default_root() -> Path:
    """``<datasets_dir>/VOCdevkit/VOC2011``."""
    return paths.datasets_dir() / "VOCdevkit" / "VOC2011"


def classes() -> list[str]:
    """The 21 class names (background first), from data/reference/pascal/classes.txt."""
    lines = (paths.reference_dir() / "pascal" / "classes.txt").read_text().splitlines()
    return [l.strip() for l in lines if l.strip()][:NUM_CLASSES]


def split_ids(split: str = "seg11valid") -> list[str]:
    """Image ids of a split list shipped in data/reference/pascal/ (``seg11valid``: 736 ids)."""
    path = paths.reference_dir() / "pascal" / f"{split}.txt"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.txt") if p.stem != "classes")
        raise ValueError(f"no split list {path.name} in {path.parent}: known splits are {known}")
    return [l.strip() for l in path.read_text().splitlines() if l.strip()]


def expected_paths(root=None, images: bool = False) -> dict[str, Path]:
    """What :func:`fcnlib.tiers.require` should find for the ``paper`` tier."""
    root = Path(root) if root else default_root()
    need = {"VOC 2011 segmentation labels (SegmentationClass/)": root / "SegmentationClass"}
    if images:
        need["VOC 2011 images (JPEGImages/)"] = root / "JPEGImages"
    return need


class UnreadableImageError(OSError):
    """An image or label file that PIL cannot decode (truncated, corrupt, not an image)."""


def _open(path):
    """``Image.open(path)``, decoded in full here: PIL reads lazily, so a truncated file would
    otherwise fail later, with an error that does not name it."""
    from PIL import Image
    im = None
    try:
        im = Image.open(path)
        im.load()
        return im
    except (OSError, SyntaxError, EOFError, ValueError) as e:  # PIL's decoding errors, all of them
        if im is not None:
            im.close()
        if isinstance(e, OSError) and e.errno is not None:     # missing, unreadable: already names the file
            raise
        raise UnreadableImageError(
            f"{path} is truncated or corrupt, PIL cannot decode it ({type(e).__name__}: {e}): re-extract "
            "it from the VOC archive (VOCtrainval_25-May-2011.tar), or delete it and unpack again") from e


def read_label(path) -> torch.Tensor:
    """A VOC label PNG as its palette indices: uint8 (H, W)."""
    with _open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{path} is a mode {im.mode!r} image, not a palette ('P') or grey ('L') "
                             "label: VOC labels store class indices, read them without converting "
                             "to RGB (a colour-rendered label cannot be turned back reliably)")
        return torch.from_numpy(np.array(im, dtype=np.uint8))


def read_image(path) -> torch.Tensor:
    """A JPEG as uint8 (3, H, W)."""
    with _open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)


class VOCSegmentation(Dataset):
    """VOC 2011 segmentation: ``(image float (3, H, W), label int64 (H, W))`` like EmbeddedScenes.

    ``ids`` overrides the split list. ``images=False`` needs only SegmentationClass/ (what the
    upper bound uses); then ``self[i]`` is the label alone. Sizes differ from image to image.
    """

    num_classes = NUM_CLASSES
    ignore_index = VOID

    def __init__(self, root=None, split: str = "seg11valid", ids=None, images: bool = True):
        self.root = Path(root) if root else default_root()
        self.ids = list(ids) if ids is not None else split_ids(split)
        self.images = images
        files = [self.label_path(i) for i in range(len(self.ids))]
        if images:
            files += [self.image_path(i) for i in range(len(self.ids))]
        missing = [p for p in files if not p.exists()]
        if missing:
            shown = "\n".join(f"  - {p}" for p in missing[:5])
            raise MissingAssetError(f"{len(missing)} of the {len(files)} VOC files listed are missing "
                                    f"under {self.root}, e.g.:\n{shown}\n{HOW}")

    def __len__(self):
        return len(self.ids)

    def label_path(self, i: int) -> Path:
        return self.root / "SegmentationClass" / f"{self.ids[i]}.png"

    def image_path(self, i: int) -> Path:
        return self.root / "JPEGImages" / f"{self.ids[i]}.jpg"

    def label(self, i: int) -> torch.Tensor:
        """uint8 (H, W) label of sample ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        return read_label(self.label_path(i))

    def labels(self):
        """All labels in order, one uint8 (H, W) tensor at a time (sizes differ)."""
        return (self.label(i) for i in range(len(self)))

    def __getitem__(self, i):
        label = self.label(i)
        if not self.images:
            return label.long()
        image = read_image(self.image_path(i))
        if image.shape[1:] != label.shape:
            raise ValueError(f"{self.ids[i]}: image {tuple(image.shape[1:])} and label "
                             f"{tuple(label.shape)} sizes differ")
        return normalize(image), label.long()


# ---------------------------------------------------------------------- tensors for the paper tier
def padded_tensors(dataset, size: int, ignore_index: int = VOID):
    """Images and labels of a dataset whose samples differ in size (VOC), zero-/void-padded (and
    cropped) to ``size``×``size`` at the bottom/right: (N, 3, S, S) float, (N, S, S) int64."""
    X = torch.zeros(len(dataset), 3, size, size)
    Y = torch.full((len(dataset), size, size), ignore_index, dtype=torch.int64)
    for i in range(len(dataset)):
        x, y = dataset[i]
        h, w = min(size, y.shape[0]), min(size, y.shape[1])
        X[i, :, :h, :w], Y[i, :h, :w] = x[:, :h, :w], y[:h, :w]
    return X, Y


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_imagenet(x: torch.Tensor) -> torch.Tensor:
    """Course-normalized images (fcnlib.data.normalize) → torchvision's ImageNet normalization."""
    c = lambda v: torch.tensor(v, device=x.device).view(3, 1, 1)  # noqa: E731
    return (x * c(STD) + c(MEAN) - c(IMAGENET_MEAN)) / c(IMAGENET_STD)
