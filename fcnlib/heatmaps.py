"""Fig. 2 measured: where a convolutionalized classifier's score maps peak, and what they name (§3.1).

Fig. 2 of the paper shows one heatmap ("tabby cat") from an ImageNet classifier run on a whole
image. Notebook 01 asks the question for every object of many scenes: take the cell where the
object's class scores highest; does that cell lie on the object, and is the object's class the
classifier's top class there? :func:`peak_hits` answers per object, :func:`summarize` in rates, and
sorts the misses by what the classifier named instead.
"""
from __future__ import annotations

import torch

from .data import CLASSES, VOID


def cell_boxes(h: int, w: int, stride: int, crop: int, size: tuple[int, int]):
    """For each cell (i, j) of an h × w grid: the rows and columns of its stride-wide square around
    its window's centre (window i starts at stride·i and is ``crop`` px wide), clipped to the image."""
    c0, half = (crop - 1) / 2, stride // 2

    def span(k, n):
        return slice(max(0, int(c0 + stride * k - half)), min(n, int(c0 + stride * k + half) + 1))
    return [span(i, size[0]) for i in range(h)], [span(j, size[1]) for j in range(w)]


def peak_hits(P: torch.Tensor, Y: torch.Tensor, stride: int, crop: int, scene_classes: int = len(CLASSES)):
    """One record per (scene, object class): ``P`` (N, C, h, w) class probabilities of the dense
    classifier, ``Y`` (N, H, W) labels. Each record: ``scene``, ``cls``, ``on`` (the class's peak
    cell lies on the object), ``top`` (the top class there among all C), ``top_scene`` (the top
    class there among the first ``scene_classes``: background and the scenes' objects), ``chance``
    (the share of cells on the object)."""
    N, C, h, w = P.shape                                           # (N, C, h, w)
    rows, cols = cell_boxes(h, w, stride, crop, tuple(Y.shape[-2:]))
    out = []
    for n in range(N):
        present = Y[n].unique().tolist()
        for c in [c for c in present if c not in (0, VOID)]:
            mask = Y[n] == c                                       # (H, W)
            cover = torch.tensor([[bool(mask[r, q].any()) for q in cols] for r in rows])  # (h, w)
            k = int(P[n, c].argmax())
            i, j = divmod(k, w)
            out.append({"scene": n, "cls": c, "on": bool(cover[i, j]), "top": int(P[n, :, i, j].argmax()),
                        "top_scene": int(P[n, :scene_classes, i, j].argmax()),
                        "chance": float(cover.float().mean()), "present": present})
    return out


def miss_kind(r: dict, scene_classes: int = len(CLASSES)) -> str | None:
    """Why an object was not named (None if it was): its peak cell lies off the object, or the
    classifier's top class there is background, another object of the scene, or a class the
    scenes never show (a pretraining-only class, as ImageNet's many classes that VOC lacks)."""
    if not r["on"]:
        return "peak off the object"
    if r["top"] == r["cls"]:
        return None
    if r["top"] == 0:
        return "background"
    if r["top"] in r["present"]:
        return "another object of the scene"
    return "a class the scenes never show" if r["top"] >= scene_classes else "another scene class"


def summarize(hits: list[dict]) -> dict:
    """Rates over all objects: ``peak_on_object``, ``peak_on_object_and_named`` (top class among
    all the classifier's classes), ``named_among_scene_classes`` (top among background and the
    scenes' 20), ``chance``, and ``misses``: how many of each :func:`miss_kind`."""
    n = len(hits)
    kinds = [miss_kind(r) for r in hits]
    misses = {k: kinds.count(k) for k in dict.fromkeys(k for k in kinds if k is not None)}
    return {"objects": n,
            "peak_on_object": sum(r["on"] for r in hits) / n,
            "peak_on_object_and_named": sum(r["on"] and r["top"] == r["cls"] for r in hits) / n,
            "named_among_scene_classes": sum(r["on"] and r["top_scene"] == r["cls"] for r in hits) / n,
            "chance": sum(r["chance"] for r in hits) / n,
            "misses": misses}
