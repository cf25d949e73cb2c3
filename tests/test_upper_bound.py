"""fcnlib.upper_bound held against hand-computed cases and a slow NumPy loop implementation."""
import math

import numpy as np
import pytest
import torch

from fcnlib import metrics as M
from fcnlib import upper_bound as ub
from fcnlib.metrics import confusion, scores

VOID = 255


# ------------------------------------------------------------------ an independent slow reference
def ref_degrade(lab, f, method, C=21):
    """Degrade with explicit loops over pixels; returns (prediction, near-tie mask for 'area')."""
    lab = np.asarray(lab)
    H, W = lab.shape
    Hc, Wc = -(-H // f), -(-W // f)
    counts = np.zeros((Hc, Wc, C))
    inside = np.zeros((Hc, Wc))
    for y in range(H):
        for x in range(W):
            inside[y // f, x // f] += 1
            if lab[y, x] != VOID:
                counts[y // f, x // f, lab[y, x]] += 1
    out = np.zeros((H, W), dtype=np.int64)
    ties = np.zeros((H, W), dtype=bool)
    if method == "area":
        frac = counts / inside[..., None]

        def taps(p, n):  # PyTorch's bilinear, align_corners=False, on the padded grid
            s = max((p + 0.5) / f - 0.5, 0.0)
            p0 = int(math.floor(s))
            p1 = min(p0 + 1, n - 1)
            return p0, p1, s - p0

        for y in range(H):
            y0, y1, ly = taps(y, Hc)
            for x in range(W):
                x0, x1, lx = taps(x, Wc)
                s = ((1 - ly) * (1 - lx) * frac[y0, x0] + (1 - ly) * lx * frac[y0, x1]
                     + ly * (1 - lx) * frac[y1, x0] + ly * lx * frac[y1, x1])
                out[y, x] = int(np.argmax(s))
                top = np.sort(s)[-2:]
                ties[y, x] = top[1] - top[0] < 1e-5
        return out, ties
    coarse = np.zeros((Hc, Wc), dtype=np.int64)
    for i in range(Hc):
        for j in range(Wc):
            majority = int(np.argmax(counts[i, j]))
            if method == "majority":
                coarse[i, j] = majority
                continue
            if method == "topleft":
                y, x = i * f, j * f
            else:
                y = i * f + min(f, H - i * f) // 2
                x = j * f + min(f, W - j * f) // 2
            coarse[i, j] = majority if lab[y, x] == VOID else lab[y, x]
    for y in range(H):
        for x in range(W):
            out[y, x] = coarse[y // f, x // f]
    return out, ties


def random_labels(h, w, seed, C=6, void=0.1):
    g = np.random.default_rng(seed)
    # blobby labels: a coarse random map upsampled, plus noise and void
    base = g.integers(0, C, size=(h // 3 + 1, w // 3 + 1))
    lab = np.kron(base, np.ones((3, 3), dtype=np.int64))[:h, :w]
    noise = g.random((h, w)) < 0.15
    lab[noise] = g.integers(0, C, size=noise.sum())
    lab[g.random((h, w)) < void] = VOID
    return lab


# ------------------------------------------------------------------ identities
@pytest.mark.parametrize("method", ub.METHODS)
def test_factor_one_is_perfect(method):
    lab = torch.from_numpy(random_labels(13, 17, 0))
    out = ub.degrade(lab, 1, method)[0]
    keep = lab != VOID
    assert torch.equal(out[keep], lab[keep])
    s = ub.upper_bound(lab, factors=[1], method=method)[1]
    assert s["mean_iu"] == 1.0 and s["pixel_acc"] == 1.0 and s["fw_iu"] == 1.0


@pytest.mark.parametrize("method", ["topleft", "center", "majority"])
@pytest.mark.parametrize("f,h,w", [(2, 8, 6), (4, 16, 12), (8, 32, 40), (4, 13, 10), (3, 7, 11)])
def test_block_constant_is_perfect(method, f, h, w):
    g = np.random.default_rng(f * h)
    coarse = g.integers(0, 21, size=(-(-h // f), -(-w // f)))
    lab = torch.from_numpy(np.kron(coarse, np.ones((f, f), dtype=np.int64))[:h, :w])
    assert torch.equal(ub.degrade(lab, f, method)[0], lab)
    assert ub.upper_bound(lab, factors=[f], method=method)[f]["mean_iu"] == 1.0


@pytest.mark.parametrize("f", [2, 4, 8])
def test_area_is_perfect_on_block_stripes(f):
    # constant on f×f blocks and along one axis: bilinear weights its own cell ≥ ½ + ½/f
    g = np.random.default_rng(f)
    stripes = g.integers(0, 21, size=6)
    lab = torch.from_numpy(np.repeat(np.repeat(stripes, f)[None], 5 * f, 0))
    assert torch.equal(ub.degrade(lab, f, "area")[0], lab)
    assert torch.equal(ub.degrade(lab.T.contiguous(), f, "area")[0], lab.T)


def test_area_rounds_a_convex_corner():
    # 8×8, f = 4: class 1 fills the top-left cell. Pixel (3, 3) gets weight 0.625² ≈ 0.39 < ½ from
    # its own cell, so it flips to 0; every other pixel is right (worked out by hand).
    lab = torch.zeros(8, 8, dtype=torch.long)
    lab[:4, :4] = 1
    want = lab.clone()
    want[3, 3] = 0
    assert torch.equal(ub.degrade(lab, 4, "area")[0], want)
    s = ub.upper_bound(lab, factors=[4], num_classes=2)[4]
    assert s["mean_iu"] == pytest.approx((15 / 16 + 48 / 49) / 2)
    assert s["pixel_acc"] == pytest.approx(63 / 64)


# ------------------------------------------------------------------ a hand-made case
HAND = np.array([[2, 1, 2, 0, 0],
                 [VOID, 1, 2, 2, 0],
                 [0, 0, 2, 2, VOID],
                 [0, 3, 3, 3, 3],
                 [0, 3, 3, 3, 0]])
# f = 2 on 5×5: 3×3 cells, the last row and column of cells half outside the image.
HAND_COARSE = {
    "topleft": [[2, 2, 0], [0, 2, 3], [0, 3, 0]],   # cell (1, 2) samples void → its majority, 3
    "center": [[1, 2, 0], [3, 3, 3], [3, 3, 0]],    # centre of a partial cell: its first row/column
    "majority": [[1, 2, 0], [0, 2, 3], [0, 3, 0]],  # ties (cells (1,1) and (2,0)) → lower class
}


@pytest.mark.parametrize("method", sorted(HAND_COARSE))
def test_hand_case(method):
    want = np.kron(np.array(HAND_COARSE[method]), np.ones((2, 2), dtype=np.int64))[:5, :5]
    got = ub.degrade(torch.from_numpy(HAND), 2, method)[0].numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref_degrade(HAND, 2, method)[0], want)


def test_block_counts_hand_case():
    counts = ub.block_counts(torch.from_numpy(HAND).long()[None], 2, 4)[0]  # (C, 3, 3)
    assert counts[:, 0, 0].tolist() == [0, 2, 1, 0]  # void not counted
    assert counts[:, 2, 2].tolist() == [1, 0, 0, 0]  # the 1×1 corner cell
    assert counts.sum().item() == (HAND != VOID).sum()


# ------------------------------------------------------------------ against the slow reference
@pytest.mark.parametrize("method", ub.METHODS)
@pytest.mark.parametrize("f", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("shape", [(13, 10), (16, 16), (9, 23)])
def test_matches_slow_reference(method, f, shape):
    lab = random_labels(*shape, seed=f + 7 * shape[1])
    want, ties = ref_degrade(lab, f, method)
    got = ub.degrade(torch.from_numpy(lab), f, method)[0].numpy()
    differ = got != want
    assert not (differ & ~ties).any(), f"{(differ & ~ties).sum()} pixels differ away from ties"


def test_dataset_level_over_sizes_and_batches():
    labs = [random_labels(12, 12, 1), random_labels(12, 12, 2), random_labels(10, 14, 3),
            random_labels(12, 12, 4)]
    C = 21
    for method in ub.METHODS:
        mat = {f: torch.zeros(C, C, dtype=torch.int64) for f in (2, 4)}
        for lab in labs:
            for f in mat:
                mat[f] += confusion(torch.from_numpy(ref_degrade(lab, f, method)[0]),
                                    torch.from_numpy(lab), C)
        for bs in (1, 2, 8):
            got = ub.upper_bound([torch.from_numpy(l) for l in labs], factors=(2, 4), method=method,
                                 batch_size=bs)
            for f in mat:
                # ties of 'area' may resolve differently, but these random maps have none at f=2, 4
                assert got[f]["mean_iu"] == pytest.approx(scores(mat[f])["mean_iu"], abs=1e-9)
    same = torch.from_numpy(np.stack([labs[0], labs[1], labs[3]]))
    a = ub.upper_bound(same, factors=(4,), method="majority")
    b = ub.upper_bound(list(same), factors=(4,), method="majority")
    np.testing.assert_equal(a, b)  # NaN-aware: absent classes have NaN IU


def test_numpy_input_and_numpy_factor():
    lab = random_labels(16, 16, 5)
    out = ub.degrade(lab, np.int64(4), "majority")
    assert out.shape == (1, 16, 16) and out.dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ub.METHODS)
def test_cuda_matches_cpu(method):
    lab = torch.from_numpy(np.stack([random_labels(64, 48, s) for s in range(4)]))
    a = ub.upper_bound(lab, factors=(4, 16), method=method, band_width=2)
    b = ub.upper_bound(lab, factors=(4, 16), method=method, band_width=2, device="cuda")
    for f in a:
        assert a[f]["mean_iu"] == pytest.approx(b[f]["mean_iu"], abs=1e-6)
        assert a[f]["band"]["mean_iu"] == pytest.approx(b[f]["band"]["mean_iu"], abs=1e-6)


# ------------------------------------------------------------------ the boundary band
def test_boundary_band_hand_case():
    lab = torch.tensor([[0, 0, 0, 1, 1, 1]])
    assert M.boundary_band(lab, 1)[0].tolist() == [[False, False, True, True, False, False]]
    assert M.boundary_band(lab, 2)[0].tolist() == [[False, True, True, True, True, False]]
    sq = torch.zeros(7, 7, dtype=torch.long)
    sq[3, 3] = VOID  # void counts as a label: its 3×3 neighbourhood is band
    band = M.boundary_band(sq, 1)[0]
    assert band.sum() == 9 and band[2:5, 2:5].all()


def test_boundary_band_matches_loops():
    lab = random_labels(11, 9, 3)
    for w in (1, 2, 3):
        want = np.zeros_like(lab, dtype=bool)
        for y in range(11):
            for x in range(9):
                win = lab[max(0, y - w):y + w + 1, max(0, x - w):x + w + 1]
                want[y, x] = win.min() != win.max()
        np.testing.assert_array_equal(M.boundary_band(torch.from_numpy(lab), w)[0].numpy(), want)


def test_band_scores_see_what_mean_iu_hides():
    lab = torch.zeros(100, 100, dtype=torch.long)
    lab[20:80, 20:80] = 1
    pred = lab.clone()
    pred[19:81, 19:81] = 1  # one pixel too big all around: tiny for mean IU, large near boundaries
    full = scores(confusion(pred, lab, 2))
    band = M.band_scores(pred, lab, 2, num_classes=2)
    assert full["mean_iu"] > 0.9
    assert band["mean_iu"] < full["mean_iu"] - 0.2
    assert M.band_scores(lab, lab, 2, num_classes=2)["mean_iu"] == 1.0
    far = lab.clone()
    far[0, 0] = 1  # an error far from every boundary does not count in the band
    assert M.band_scores(far, lab, 2, num_classes=2)["mean_iu"] == 1.0


def test_upper_bound_band_width():
    lab = torch.from_numpy(random_labels(32, 32, 9))
    r = ub.upper_bound(lab, factors=(4, 8), method="area", band_width=2)
    for f in (4, 8):
        pred = ub.degrade(lab, f, "area")
        want = M.band_scores(pred, lab[None], 2)
        assert r[f]["band"]["mean_iu"] == pytest.approx(want["mean_iu"])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad", [21, 100, -1, 254])
def test_values_outside_classes(bad):
    lab = torch.zeros(8, 8, dtype=torch.long)
    lab[2, 2] = bad
    with pytest.raises(ValueError, match=r"outside the classes 0\.\.20.*not void"):
        ub.degrade(lab, 2)
    with pytest.raises(ValueError, match="outside the classes"):
        ub.upper_bound(lab, factors=(2,))


def test_void_is_not_an_error_and_all_void_is_clear():
    lab = torch.full((8, 8), VOID)
    assert ub.degrade(lab, 4).shape == (1, 8, 8)
    with pytest.raises(ValueError, match="no labelled"):
        ub.upper_bound(lab, factors=(4,))


def test_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"\(H, W\) or a batch"):
        ub.degrade(torch.zeros(1, 2, 8, 8, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\(H, W\) or a batch"):
        ub.degrade(torch.zeros(8, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="integer class indices"):
        ub.degrade(torch.zeros(8, 8), 2)
    with pytest.raises(ValueError, match="shape"):
        M.band_scores(torch.zeros(8, 8, dtype=torch.long), torch.zeros(8, 9, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="shape"):
        M.band_confusion(torch.zeros(2, 8, 8, dtype=torch.long), torch.zeros(8, 8, dtype=torch.long),
                          None)


@pytest.mark.parametrize("factor", [0, -4, 2.5, 4.0, "4", True, None])
def test_bad_factors(factor):
    lab = torch.zeros(8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        ub.degrade(lab, factor)
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        ub.upper_bound(lab, factors=(8, factor))
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        ub.coarse_shape(8, 8, factor)


@pytest.mark.parametrize("width", [0, -1, 1.5])
def test_bad_band_width(width):
    lab = torch.zeros(8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="band width must be a positive integer"):
        M.boundary_band(lab, width)
    with pytest.raises(ValueError, match="band width must be a positive integer"):
        ub.upper_bound(lab, factors=(2,), band_width=width)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'bilinear'.*topleft"):
        ub.degrade(torch.zeros(8, 8, dtype=torch.long), 2, "bilinear")
    with pytest.raises(ValueError, match="unknown method"):
        ub.upper_bound(torch.zeros(8, 8, dtype=torch.long), method="nearest")


def test_default_method_is_documented():
    assert ub.DEFAULT_METHOD in ub.METHODS
    assert f'``"{ub.DEFAULT_METHOD}"`` (default)' in ub.__doc__
    assert ub.FACTORS == (128, 64, 32, 16, 8, 4)


# ------------------------------------------------------------------ notebook 06's exercises
def test_exercise_bank_06():
    from fcnlib import exercises
    exercises.load("06", key=True)
    hand = {"06.dataset_mean_iu": (100 / 120 + 5 / 20 + 15 / 20) / 3,            # worked by hand
            "06.per_image_mean_iu": ((80 / 95 + 5 / 20) / 2 + (20 / 25 + 15 / 20) / 2) / 2,
            "06.majority_bound": (6 / 8 + 4 / 5 + 3 / 4) / 3}
    for key, value in hand.items():
        assert exercises.key_answer(key) == pytest.approx(value)
        assert exercises.grade(key, value) == "correct"
        with pytest.raises(exercises.ExerciseError):
            exercises.check(key, value + 0.05)
