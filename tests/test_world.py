"""The embedded world: one set of settings, and the regime it claims (§4.2) measured independently."""
import numpy as np
import pytest

from fcnlib import data, world


def test_scene_kwargs_keep_objects_the_same_size_in_pixels():
    base = world.scene_kwargs()
    assert base["size"] == world.SIZE and base["objects"] == world.OBJECTS
    big = world.scene_kwargs(4 * world.SIZE)
    assert big["radius"][0] * big["size"] == pytest.approx(world.RADIUS_PX[0])
    assert big["radius"][1] * big["size"] == pytest.approx(world.RADIUS_PX[1])
    assert big["objects"] == (16 * world.OBJECTS[0], 16 * world.OBJECTS[1])  # same objects per area
    assert world.scene_kwargs(256, objects=(2, 3))["objects"] == (2, 3)


def test_scenes_follow_the_settings():
    ds = world.scenes("val", 6)
    img, lab = ds.raw(0)
    assert img.shape[-2:] == lab.shape == (world.SIZE, world.SIZE)
    for i in range(6):
        lab = ds.raw(i)[1].numpy()
        classes = set(np.unique(lab).tolist()) - {0, data.VOID}
        assert 1 <= len(classes) <= world.OBJECTS[1]


def test_regime_against_an_independent_count():
    n = 12
    got = world.regime(n=n)
    ds = world.scenes("val", n)
    bg = lab_px = 0
    sides = []
    for i in range(n):
        lab = ds.raw(i)[1].numpy()
        bg += int((lab == 0).sum())
        lab_px += int((lab != data.VOID).sum())
        for c in set(np.unique(lab).tolist()) - {0, data.VOID}:
            rows, cols = np.where((lab == c).any(1))[0], np.where((lab == c).any(0))[0]  # bounding box
            sides.append(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
    assert got["background_share"] == pytest.approx(bg / lab_px)
    assert got["objects"] == len(sides)
    assert got["object_cells_median"] == pytest.approx(np.quantile(np.array(sides) / 32, 0.5))
    # the regime the world is chosen for: objects span more than one stride-32 cell, and a good share
    # of their pixels lie near a boundary, finer than a cell
    assert got["object_cells_median"] > 1.5
    assert 0.1 < got["object_pixels_within_4px"] < 0.6
