"""The training loop: the paper's recipe, crash-and-resume, NaN detection."""
import pytest
import torch
from torch import nn

from fcnlib import train


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))


def tiny_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 3, 8, 8, generator=g)
    Y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    Y[:, 0, 0] = 255
    return X, Y


def test_biases_at_twice_the_rate_without_decay():
    groups = train.param_groups(tiny_net(), lr=0.1, weight_decay=5e-4)
    assert groups[0]["lr"] == 0.1 and groups[0]["weight_decay"] == 5e-4
    assert groups[1]["lr"] == 0.2 and groups[1]["weight_decay"] == 0.0
    assert all(p.dim() == 1 for p in groups[1]["params"])


def test_loss_goes_down_and_void_is_ignored():
    X, Y = tiny_data()
    hist = train.train(tiny_net(), (X, Y), train.TrainConfig(iters=60, batch_size=4, lr=0.05),
                       progress=False)
    assert hist.loss[-1] < hist.loss[0] and len(hist.time) == 60
    logits = torch.zeros(1, 4, 2, 2)
    y = torch.full((1, 2, 2), 255)
    y[0, 0, 0] = 1
    assert train.pixel_loss(logits, y).item() == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_crash_and_resume_gives_the_same_model(tmp_path):
    X, Y = tiny_data()
    cfg = train.TrainConfig(iters=20, batch_size=4, lr=0.05, ckpt_every=5)
    straight = tiny_net()
    h1 = train.train(straight, (X, Y), cfg, progress=False)

    class Crash(Exception):
        pass

    crashing = tiny_net()
    calls = {"n": 0}

    def batch_fn(x, y, step):
        calls["n"] += 1
        if step == 12:
            raise Crash
        return x, y

    ckpt = tmp_path / "run.pt"
    with pytest.raises(Crash):
        train.train(crashing, (X, Y), cfg, ckpt_path=ckpt, batch_fn=batch_fn, progress=False)
    resumed = tiny_net()
    h2 = train.train(resumed, (X, Y), cfg, ckpt_path=ckpt, progress=False)
    assert h2.step == h1.step
    assert h2.loss == pytest.approx(h1.loss, rel=1e-5)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    # a finished run is not trained again
    again = tiny_net()
    h3 = train.train(again, (X, Y), cfg, ckpt_path=ckpt, progress=False)
    assert h3.loss == h2.loss
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), resumed.parameters()))


def test_nan_loss_names_the_step():
    X, Y = tiny_data()
    X[3] = float("nan")
    with pytest.raises(FloatingPointError, match="at step"):
        train.train(tiny_net(), (X, Y), train.TrainConfig(iters=50, batch_size=12, lr=0.01), progress=False)
