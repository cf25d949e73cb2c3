"""fcnlib.heatmaps (Fig. 2 measured) on hand-made score maps whose answers are known by construction."""
import pytest
import torch

from fcnlib import heatmaps
from fcnlib.data import VOID

STRIDE, CROP, C = 8, 16, 30        # cell (i, j) covers rows 7.5 + 8i ± 4; 30 classes, the first 21 the scenes'


def scene():
    """A 32×32 label map: class 3 in rows/cols 0–7 (cell 0, 0), class 5 in rows 16–23, cols 24–31
    (cell 2, 3) with a void outline, background elsewhere; and uniform scores to edit."""
    Y = torch.zeros(1, 32, 32, dtype=torch.long)
    Y[0, 0:8, 0:8] = 3
    Y[0, 16:24, 24:32] = 5
    Y[0, 15, 24:32] = VOID
    P = torch.full((1, C, 3, 4), 1.0 / C)                     # (N, C, h, w): cells 0–2 × 0–3
    return P, Y


def test_cell_boxes_are_the_stride_squares_around_window_centres():
    rows, cols = heatmaps.cell_boxes(3, 4, STRIDE, CROP, (32, 32))
    for k, s in enumerate(cols):                               # centre 7.5 + 8k: pixels int(3.5 + 8k) … int(11.5 + 8k)
        assert (s.start, s.stop) == (int(7.5 + 8 * k - 4), min(32, int(7.5 + 8 * k + 4) + 1))
    assert rows[0].start == 3 and cols[-1].stop == 32          # clipped to the image


def test_named_on_and_off_and_the_kinds_of_miss():
    P, Y = scene()
    P[0, 3, 0, 0] = 0.6                                        # class 3 peaks on its object, and is top there
    P[0, 5, 0, 1] = 0.5                                        # class 5 peaks at cell (0, 1): off its object
    hits = {r["cls"]: r for r in heatmaps.peak_hits(P, Y, STRIDE, CROP, scene_classes=21)}
    assert hits[3]["on"] and hits[3]["top"] == 3 and heatmaps.miss_kind(hits[3]) is None
    assert not hits[5]["on"] and heatmaps.miss_kind(hits[5]) == "peak off the object"
    # chance: the share of the 12 cells whose square holds a pixel of the class (found by brute force)
    rows, cols = heatmaps.cell_boxes(3, 4, STRIDE, CROP, (32, 32))
    brute = sum(bool((Y[0, r, q] == 3).any()) for r in rows for q in cols) / 12
    assert hits[3]["chance"] == pytest.approx(brute)


@pytest.mark.parametrize("top, kind", [(0, "background"), (5, "another object of the scene"),
                                       (7, "another scene class"), (25, "a class the scenes never show")])
def test_what_the_classifier_named_instead(top, kind):
    P, Y = scene()
    P[0, 3, 0, 0] = 0.3                                        # class 3's peak, on the object …
    P[0, top, 0, 0] = 0.5                                      # … where another class is top
    P[0, 5, 2, 3] = 0.6
    hits = {r["cls"]: r for r in heatmaps.peak_hits(P, Y, STRIDE, CROP, scene_classes=21)}
    assert hits[3]["on"] and heatmaps.miss_kind(hits[3], scene_classes=21) == kind
    named_among_scene = top >= 21                              # a pretraining-only class drops out among the 21
    assert (hits[3]["top_scene"] == 3) == named_among_scene
    s = heatmaps.summarize(list(hits.values()))
    assert s["objects"] == 2 and s["peak_on_object"] == 1.0
    assert s["peak_on_object_and_named"] == 0.5                # class 5 named, class 3 not
    assert s["named_among_scene_classes"] == (1.0 if named_among_scene else 0.5)
    assert s["misses"] == {kind: 1}
