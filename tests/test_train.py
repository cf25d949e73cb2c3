"""The training loop: the paper's recipe, exact crash-and-resume, checkpoints keyed by the run, NaN
detection, and random streams of its own."""
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

from fcnlib import paths, train


def tiny_net(dropout: float = 0.0):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(dropout), nn.Conv2d(8, 4, 1))


def tiny_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(12, 3, 8, 8, generator=g)
    Y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    Y[:, 0, 0] = 255
    return X, Y


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


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


class Crash(Exception):
    pass


def crash_at(at):
    def batch_fn(x, y, step):
        if step == at:
            raise Crash
        return x, y
    return batch_fn


def test_crash_and_resume_is_exact_with_dropout(tmp_path):
    """Dropout draws after a resume are those of the uninterrupted run (the checkpoint holds the
    random states), so weights and losses are bit-identical."""
    X, Y = tiny_data()
    cfg = train.TrainConfig(iters=20, batch_size=4, lr=0.05, ckpt_every=5)
    straight = tiny_net(dropout=0.5)
    h1 = train.train(straight, (X, Y), cfg, progress=False)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(Crash):
        train.train(tiny_net(dropout=0.5), (X, Y), cfg, ckpt_path=ckpt, batch_fn=crash_at(12), progress=False)
    assert train.read_checkpoint(ckpt)["step"] == 10
    resumed = tiny_net(dropout=0.5)
    h2 = train.train(resumed, (X, Y), cfg, ckpt_path=ckpt, progress=False)
    assert h2.step == h1.step and h2.loss == h1.loss
    assert same_weights(straight, resumed)
    # a finished run is not trained again, and its file is left as it is
    before = ckpt.read_bytes()
    again = tiny_net(dropout=0.5)
    h3 = train.train(again, (X, Y), cfg, ckpt_path=ckpt, progress=False)
    assert h3.loss == h2.loss and same_weights(again, resumed)
    assert ckpt.read_bytes() == before


def test_training_leaves_the_callers_random_streams_alone(tmp_path):
    """What follows a stage draws the same numbers whether the stage trained, resumed or was loaded."""
    X, Y = tiny_data()
    cfg = train.TrainConfig(iters=6, batch_size=4, lr=0.05, ckpt_every=2)
    ckpt = tmp_path / "run.pt"
    draws = []
    for _ in range(2):   # first: trains; second: loads the finished checkpoint
        torch.manual_seed(123)
        train.train(tiny_net(dropout=0.5), (X, Y), cfg, ckpt_path=ckpt, progress=False)
        draws.append(torch.rand(4))
    torch.manual_seed(123)
    tiny_net(dropout=0.5)            # the same model construction, no training at all
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], torch.rand(4))


def test_a_checkpoint_of_another_run_is_neither_reused_nor_overwritten(tmp_path):
    X, Y = tiny_data()
    ckpt = tmp_path / "run.pt"
    train.train(tiny_net(), (X, Y), train.TrainConfig(iters=20, batch_size=4, lr=0.05), ckpt_path=ckpt,
                progress=False)
    before = ckpt.read_bytes()
    with pytest.raises(train.CheckpointMismatchError, match=r"iters: 20 there, 40 now.*delete"):
        train.train(tiny_net(), (X, Y), train.TrainConfig(iters=40, batch_size=4, lr=0.05), ckpt_path=ckpt,
                    progress=False)
    with pytest.raises(train.CheckpointMismatchError, match="training data differ"):
        train.train(tiny_net(), tiny_data(seed=1), train.TrainConfig(iters=20, batch_size=4, lr=0.05),
                    ckpt_path=ckpt, progress=False)
    other_start = tiny_net()
    with torch.no_grad():
        other_start[0].weight.mul_(2)
    with pytest.raises(train.CheckpointMismatchError, match="starting model"):
        train.train(other_start, (X, Y), train.TrainConfig(iters=20, batch_size=4, lr=0.05), ckpt_path=ckpt,
                    progress=False)
    assert ckpt.read_bytes() == before and sorted(tmp_path.iterdir()) == [ckpt]


def test_a_truncated_checkpoint_is_named_moved_aside_and_retrained(tmp_path):
    X, Y = tiny_data()
    cfg = train.TrainConfig(iters=8, batch_size=4, lr=0.05)
    ckpt = tmp_path / "run.pt"
    h1 = train.train(tiny_net(), (X, Y), cfg, ckpt_path=ckpt, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    with pytest.warns(UserWarning, match=r"run\.pt is unreadable.*moved to .*corrupt"):
        h2 = train.train(tiny_net(), (X, Y), cfg, ckpt_path=ckpt, progress=False)
    assert h2.loss == h1.loss
    assert train.read_checkpoint(ckpt)["step"] == 8
    assert len(list(tmp_path.glob("run.pt.corrupt-*"))) == 1


def test_checkpoints_load_with_weights_only(tmp_path):
    X, Y = tiny_data()
    ckpt = tmp_path / "run.pt"
    train.train(tiny_net(dropout=0.5), (X, Y), train.TrainConfig(iters=3, batch_size=4), ckpt_path=ckpt,
                progress=False)
    state = torch.load(ckpt, weights_only=True)
    assert {"model", "optimizer", "step", "history", "rng", "identity"} <= set(state)


def test_nan_loss_names_the_step():
    X, Y = tiny_data()
    X[3] = float("nan")
    with pytest.raises(FloatingPointError, match="at step"):
        train.train(tiny_net(), (X, Y), train.TrainConfig(iters=50, batch_size=12, lr=0.01), progress=False)


# A staged run (two stages with dropout, new layers drawn from the global generator between them),
# killed with SIGKILL in the middle of either stage and started again, must end exactly where an
# uninterrupted run ends.
STAGED = textwrap.dedent('''
    import os, signal, sys, torch
    from torch import nn
    from fcnlib import staged
    from fcnlib.train import TrainConfig
    torch.set_num_threads(1)
    kill = os.environ.get("KILL_AT", "")
    def batch_fn_for(name):
        def fn(x, y, step):
            if kill == f"{name}:{step}":
                os.kill(os.getpid(), signal.SIGKILL)
            return x, y
        return fn
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(16, 3, 8, 8, generator=g)
    Y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    def first(_):
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.5), nn.Conv2d(8, 3, 1))
    def second(parent):
        return nn.Sequential(*parent[:3], nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Dropout(0.3), parent[3])
    plan = [staged.Stage("one", first, TrainConfig(iters=12, batch_size=4, lr=0.05, ckpt_every=4, seed=1)),
            staged.Stage("two", second, TrainConfig(iters=12, batch_size=4, lr=0.02, ckpt_every=4, seed=2),
                         parent="one")]
    results = {}
    for st in plan:
        results[st.name] = staged.run_stage(st, results.get(st.parent), (X, Y), (X, Y), num_classes=3,
                                            ckpt_dir=sys.argv[1], data_id="toy", progress=False,
                                            batch_fn=batch_fn_for(st.name))
    r = results["two"]
    torch.save({"state": r.model.state_dict(), "loss": results["one"].history.loss + r.history.loss,
                "mean_iu": r.metrics["mean_iu"], "after": torch.rand(3)}, sys.argv[2])
''')


def _staged(tmp_path, ckpt_dir, out, kill=""):
    script = tmp_path / "staged_run.py"
    script.write_text(STAGED)
    env = {**os.environ, "KILL_AT": kill, "PYTHONPATH": str(paths.ROOT)}
    return subprocess.run([sys.executable, str(script), str(ckpt_dir), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    done = _staged(folder, folder / "ckpt", folder / "straight.pt")
    assert done.returncode == 0, done.stderr
    return folder / "straight.pt"


@pytest.mark.parametrize("kill", ["one:6", "two:1", "two:9"])
def test_a_killed_staged_run_resumes_exactly(tmp_path, kill, uninterrupted):
    killed = _staged(tmp_path, tmp_path / "killed", tmp_path / "killed.pt", kill=kill)
    assert killed.returncode == -9 and not (tmp_path / "killed.pt").exists()
    rerun = _staged(tmp_path, tmp_path / "killed", tmp_path / "killed.pt")
    assert rerun.returncode == 0, rerun.stderr
    a, b = (torch.load(p, weights_only=True) for p in (uninterrupted, tmp_path / "killed.pt"))
    assert a["loss"] == b["loss"] and a["mean_iu"] == b["mean_iu"] and torch.equal(a["after"], b["after"])
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])


def test_the_frontier_tool_runs(capsys):
    """tools/frontier_skip.py (how the embedded tier's schedule is chosen) on a tiny setting."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("frontier_skip", paths.ROOT / "tools" / "frontier_skip.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--size", "64", "--n-train", "8", "--n-val", "4", "--iters", "2", "2", "2", "--evals", "1",
               "--batch", "4", "--device", "cpu"])
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if "mean IU" in line] == ["FCN-32s", "FCN-16s", "FCN-8s"]
