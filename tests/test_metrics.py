"""The four metrics of Section 5, held against hand-computed values and the reference's NumPy code."""
import numpy as np
import pytest
import torch

from fcnlib import metrics


def reference_fast_hist(a, b, n):
    """The reference implementation's confusion matrix (score.py in fcn.berkeleyvision.org)."""
    k = (a >= 0) & (a < n)
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)


def reference_scores(hist):
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.diag(hist).sum() / hist.sum()
        acc_cls = np.nanmean(np.diag(hist) / hist.sum(1))
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
        fw = (freq[freq > 0] * iu[freq > 0]).sum()
        return {"pixel_acc": acc, "mean_acc": acc_cls, "mean_iu": np.nanmean(iu), "fw_iu": fw}


def test_golden_hand_computed():
    # 2 classes: truth [0,0,0,1,1,void], prediction [0,0,1,1,0,1]
    target = torch.tensor([0, 0, 0, 1, 1, 255])
    pred = torch.tensor([0, 0, 1, 1, 0, 1])
    cm = metrics.confusion(pred, target, 2)
    assert cm.tolist() == [[2, 1], [1, 1]]
    s = metrics.scores(cm)
    assert s["pixel_acc"] == pytest.approx(3 / 5)
    assert s["mean_acc"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert s["mean_iu"] == pytest.approx((2 / 4 + 1 / 3) / 2)
    assert s["fw_iu"] == pytest.approx((3 * 2 / 4 + 2 * 1 / 3) / 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_reference_numpy(seed):
    g = torch.Generator().manual_seed(seed)
    n = 21
    target = torch.randint(0, n, (4, 50, 60), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    target[target == 7] = 9  # class 7 absent from the ground truth…
    pred = torch.randint(0, n, (4, 50, 60), generator=g)
    pred[pred == 3] = 4      # … class 3 never predicted
    cm = metrics.ConfusionMatrix(n)
    for i in range(4):
        cm.update(pred[i:i + 1], target[i:i + 1])
    hist = reference_fast_hist(target.numpy().ravel(), pred.numpy().ravel(), n)
    assert np.array_equal(cm.mat.numpy(), hist)
    ours, ref = cm.compute(), reference_scores(hist)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], abs=1e-12)


def test_scores_accept_logits():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = 1.0
    cm = metrics.ConfusionMatrix(3).update(logits, torch.full((1, 2, 2), 2))
    assert cm.compute()["pixel_acc"] == 1.0


def test_absent_class_policy_and_present_only():
    # class 2 absent from truth and prediction: left out of the means (NaN IU)
    cm = torch.tensor([[5, 0, 0], [1, 4, 0], [0, 0, 0]])
    s = metrics.scores(cm)
    assert np.isnan(s["per_class_iu"][2])
    assert s["mean_iu"] == pytest.approx((5 / 6 + 4 / 5) / 2)
    # class 2 absent from truth but predicted: IU 0 counts in the mean, unless present_only
    cm = torch.tensor([[5, 0, 1], [1, 4, 0], [0, 0, 0]])
    s = metrics.scores(cm)
    assert s["mean_iu"] == pytest.approx((5 / 7 + 4 / 5 + 0) / 3)
    assert metrics.scores(cm, present_only=True)["mean_iu"] == pytest.approx((5 / 7 + 4 / 5) / 2)


def test_bad_input():
    with pytest.raises(ValueError, match="outside the classes"):
        metrics.confusion(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 30, 255]), 21)
    with pytest.raises(ValueError, match="differ"):
        metrics.confusion(torch.zeros(3, 3), torch.zeros(3, 4), 21)
    with pytest.raises(ValueError, match="empty"):
        metrics.scores(torch.zeros(3, 3))


def test_other_void_values_and_dtypes():
    target = torch.tensor([[0, 1, -1], [2, 2, 1]])
    pred = torch.tensor([[0, 1, 2], [2, 0, 1]])
    cm = metrics.confusion(pred, target, 3, ignore_index=-1)
    assert cm.tolist() == [[1, 0, 0], [0, 2, 0], [1, 0, 1]]
    as_uint8 = metrics.confusion(pred.to(torch.uint8), torch.where(target < 0, 255, target).to(torch.uint8), 3)
    assert torch.equal(cm, as_uint8)
    with pytest.raises(ValueError, match="negative"):
        metrics.confusion(pred, target, 3)
    with pytest.raises(ValueError, match="predictions must be class indices"):
        metrics.confusion(pred + 1, target.clamp(min=0), 3)


def test_update_refuses_ambiguous_prediction_shapes():
    """(N, 1, H, W) class indices (``argmax(1, keepdim=True)``) were argmaxed again over their 1-long
    axis: every pixel became class 0 and perfect predictions scored ~0.05 mean IU, silently."""
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 21, (2, 8, 9), generator=g)
    scores = torch.randn(2, 21, 8, 9, generator=g)
    scores.scatter_(1, target.unsqueeze(1), 10.0)           # perfect scores
    perfect = metrics.ConfusionMatrix(21).update(scores, target).compute()
    assert perfect["mean_iu"] == 1.0
    assert metrics.ConfusionMatrix(21).update(scores.argmax(1), target).compute()["mean_iu"] == 1.0
    with pytest.raises(ValueError, match=r"(?s)\(2, 1, 8, 9\).*squeeze\(1\)"):
        metrics.ConfusionMatrix(21).update(scores.argmax(1, keepdim=True), target)
    with pytest.raises(ValueError, match=r"(?s)\(2, 1, 8, 9\).*squeeze\(1\)"):
        metrics.ConfusionMatrix(21).update(scores.argmax(1, keepdim=True).float(), target)
    # integer tensors with an extra dimension are not scores
    with pytest.raises(ValueError, match=r"(?s)\(2, 21, 8, 9\).*integer.*\(N, H, W\)"):
        metrics.ConfusionMatrix(21).update(scores.long(), target)
    # scores over another number of classes
    with pytest.raises(ValueError, match=r"(?s)\(2, 20, 8, 9\).*C must equal num_classes \(21\)"):
        metrics.ConfusionMatrix(21).update(scores[:, :20], target)
    with pytest.raises(ValueError, match="argmax"):                # float indices: confusion() says so
        metrics.ConfusionMatrix(21).update(scores.argmax(1).float(), target)


def test_objects_right_counts_majority_class_per_object():
    target = torch.zeros(2, 6, 6, dtype=torch.long)
    target[0, :3, :3] = 4          # object A: 9 px
    target[0, 3:, 3:] = 7          # object B: 9 px
    target[1, 1:5, 1:5] = 2        # object C: 16 px
    target[1, 0, 0] = 255
    pred = target.clone()
    pred[1, 0, 0] = 0
    pred[0, 3:, 3:5] = 0           # B: 6 of 9 px background -> wrong
    pred[1, 1:3, 1:5] = 9          # C: 8 of 16 px predicted class 9 ...
    pred[1, 1, 1] = 0              # ... then 7 px class 9, 8 px class 2, 1 px background -> right
    out = metrics.objects_right(pred, target)
    assert out == {"objects": 3, "right": 2, "share": 2 / 3}
    with pytest.raises(ValueError, match="same shape"):
        metrics.objects_right(pred[:1], target)
