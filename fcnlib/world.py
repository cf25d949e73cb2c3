"""The embedded world: the one set of scene settings, stand-in backbone and recipe every notebook uses.

The paper's regime (§4.2) is PASCAL VOC at about 500 px, where an object spans several of the
classifier's stride-32 cells — so FCN-32s can find it — while its thin parts and boundaries are
finer than a cell, so the skips to stride 16 and 8 have something to add. The embedded world keeps
that regime at a size a CPU trains in minutes:

- scenes of ``SIZE`` = 128 px with one to four objects of radius ``RADIUS_PX`` = 19–45 px (0.15–0.35
  of the side): an object's diameter spans 1.2–2.8 cells of 32 px, and crosses, rings and the 1-px
  void outlines (``VOID_WIDTH``) are finer than a cell;
- the stand-in VGG16 (``fcnlib.pretrain``), pretrained on 96-px crops of 48 object classes and
  background whose objects have the scenes' radii (0.2–0.47 of a crop, 19–45 px);
- the fine-tuning recipe of §4.3 scaled to the CPU (``RECIPE``).

:func:`regime` measures the claim on the scenes themselves (cells per object, pixels near a boundary,
background share); notebook 00 shows it and the README quotes it. Other sizes of the same world (a
bigger canvas in notebook 01, say) keep the objects' size in pixels: :func:`scene_kwargs`.
"""
from __future__ import annotations

import torch

from . import data, models, pretrain, transplant

SIZE = 128                  # px, the side of a scene
RADIUS_PX = (19.2, 44.8)    # px, object radius (0.15–0.35 of SIZE)
OBJECTS = (1, 4)            # fewest and most objects per scene (at SIZE)
VOID_WIDTH = 1              # px of void along every label boundary, as VOC's outlines
BACKBONE = "vgg16"          # the stand-in every trained FCN starts from
N_TRAIN, N_VAL = 2000, 100  # scenes in the embedded train and val splits
# §4.3 scaled to the CPU: SGD momentum 0.9, weight decay 5e-4 (fcnlib.train's defaults), batch 10,
# FCN-32s at lr 0.01, the skip nets at lr / 2 (notebook 04 explains both departures from the paper);
# steps of FCN-32s-fixed, FCN-32s and each later stage (about 3 CPU-minutes on 2 cores)
RECIPE = {"batch": 10, "lr": 0.01, "divisor": 2, "iters": {"fixed": 400, "fcn32s": 500, "skip": 250}}


def scene_kwargs(size: int = SIZE, objects: tuple[int, int] | None = None) -> dict:
    """Keyword arguments of :class:`fcnlib.data.EmbeddedScenes` for the world at ``size`` px: the same
    objects in pixels; by default as many per unit of area as at ``SIZE``."""
    if objects is None:
        scale = (size / SIZE) ** 2
        objects = (max(1, round(OBJECTS[0] * scale)), max(1, round(OBJECTS[1] * scale)))
    return {"size": size, "objects": tuple(objects), "void_width": VOID_WIDTH,
            "radius": (RADIUS_PX[0] / size, RADIUS_PX[1] / size)}


def scenes(split: str, n: int, seed: int = 0, size: int = SIZE, objects=None) -> data.EmbeddedScenes:
    """``n`` scenes of the world's ``split`` (train / val / test)."""
    return data.EmbeddedScenes(split, n=n, seed=seed, **scene_kwargs(size, objects))


def standin(device="cpu") -> torch.nn.Module:
    """The pretrained stand-in classifier the world's FCNs start from (checked against its checksum)."""
    return pretrain.pretrained(BACKBONE, device=device)


def fcn(variant: str = "32s", classifier: torch.nn.Module | None = None) -> models.FCN:
    """An FCN-``variant`` made from the stand-in (§4.1), conv1 padded so that its coarse grid sits
    where the reference's does (``transplant.equivalent_pad``)."""
    classifier = standin() if classifier is None else classifier
    return transplant.fcn_from_classifier(classifier, variant, data.NUM_CLASSES, transplant.equivalent_pad(classifier),
                                      source=f"standin-{BACKBONE}")


def regime(n: int = 200, seed: int = 0, stride: int = 32, near: int = 4) -> dict:
    """What the world's val scenes look like to an FCN: the share of background pixels, each object's
    extent in cells of ``stride`` px (the side of its bounding box / stride; median and 10th–90th
    percentiles), and the share of object pixels within ``near`` px of a label boundary."""
    ds = scenes("val", n, seed)
    extents, background, labelled, near_edge, obj = [], 0, 0, 0, 0
    for i in range(n):
        _, lab = ds.raw(i)  # (H, W) uint8
        valid = lab != data.VOID
        background += int(((lab == 0) & valid).sum())
        labelled += int(valid.sum())
        edge = data.void_band(lab, near) == data.VOID   # within `near` px of a boundary (or void)
        for c in lab.unique().tolist():
            if c in (0, data.VOID):
                continue
            ys, xs = torch.nonzero(lab == c, as_tuple=True)
            extents.append(max(int(ys.max() - ys.min()), int(xs.max() - xs.min())) + 1)
            obj += int((lab == c).sum())
            near_edge += int(((lab == c) & edge).sum())
    cells = torch.tensor(extents, dtype=torch.float) / stride
    q = torch.quantile(cells, torch.tensor([0.1, 0.5, 0.9])).tolist()
    return {"background_share": background / labelled, "object_cells_p10": q[0], "object_cells_median": q[1],
            "object_cells_p90": q[2], "objects": len(extents), f"object_pixels_within_{near}px": near_edge / obj,
            "size": SIZE, "radius_px": RADIUS_PX, "stride": stride}
