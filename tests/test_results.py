"""Recording results: atomic merges that parallel notebook runs cannot clobber; the report."""
import json
import os
import multiprocessing as mp

import pytest
import torch

from fcnlib import report, results, tiers


def _writer(args):
    folder, stem = args
    for i in range(20):
        results.merge_summary(stem, {f"k{i}": i}, folder)


def test_parallel_merges_lose_nothing(tmp_path):
    stems = [f"nb{i}" for i in range(4)]
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_writer, [(str(tmp_path), s) for s in stems])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary) == stems
    for s in stems:
        assert summary[s] == {f"k{i}": i for i in range(20)}
    assert not list(tmp_path.glob(".summary.json.*"))  # no temporary file left behind


def test_run_records_and_report(tmp_path):
    run = results.start_run("99_test", tier="smoke", device="cpu", seed=3, results_dir=tmp_path, threads=1)
    run.record(accuracy=torch.tensor(0.5), sizes=(1, 2), nested={"a": 1.0})
    run.compare("mean IU", 0.41, 62.7, unit="%")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure()
    run.savefig(fig, "empty")
    assert run.finish() is None and run.record(x=1) is None   # a cell ending with them shows no record
    entry = results.load_summary(tmp_path)["99_test"]
    assert entry["accuracy"] == 0.5 and entry["sizes"] == [1, 2]
    assert entry["_run"]["status"] == "ok" and entry["_run"]["tier"] == "smoke"
    assert entry["_run"]["figures"] == ["figures/99_test/empty.png"]
    assert (tmp_path / "figures/99_test/empty.png").exists()
    md = report.write(tmp_path).read_text()
    assert "| mean IU | 0.41 | 62.7 | % |" in md and "99_test" in md


def test_nan_is_recorded_as_null(tmp_path):
    assert results.to_jsonable(float("nan")) is None
    with pytest.raises(TypeError, match="cannot record"):
        results.to_jsonable(object())


def test_unknown_tier_and_device():
    with pytest.raises(ValueError, match="unknown tier 'fast'"):
        tiers.check_tier("fast")
    with pytest.raises(ValueError, match="unknown device"):
        results.start_run("x", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            results.start_run("x", device="cuda")


def test_paper_tier_requirement_message(tmp_path):
    with pytest.raises(tiers.MissingAssetError, match="VOC images.*nothing is downloaded|VOC images"):
        tiers.require({"VOC images": tmp_path / "VOCdevkit"}, how="Put VOC under data/datasets.")


def test_start_run_owns_the_random_streams(tmp_path, monkeypatch):
    """Measuring the thread count must not draw from the generator the seed fixes: start_run twice in one
    kernel, with the thread count measured or given, gives the same draws after each call."""
    from fcnlib import runtime
    draws = []
    for threads in ("auto", "auto", 1):
        runtime._CHOSEN.clear()                        # measure again each time
        monkeypatch.setattr(runtime, "usable_cores", lambda: 2, raising=False)
        monkeypatch.delenv("FCN_THREADS", raising=False)
        results.start_run("98_seed", tier="smoke", device="cpu", seed=7, results_dir=tmp_path, threads=threads)
        draws.append((torch.rand(3), torch.nn.Conv2d(2, 2, 1).weight.detach().clone()))
    for a, b in draws[1:]:
        assert torch.equal(a, draws[0][0]) and torch.equal(b, draws[0][1])


def test_choosing_threads_draws_nothing():
    from fcnlib import runtime
    before = torch.get_rng_state()
    runtime.choose_threads([1, 2], cache=False)
    assert torch.equal(before, torch.get_rng_state())


def test_bad_thread_setting_is_named(monkeypatch):
    from fcnlib import runtime
    monkeypatch.setenv("FCN_THREADS", "two")
    with pytest.raises(ValueError, match="FCN_THREADS='two'"):
        runtime.set_threads("auto")


def test_claims_are_checked_and_the_ledger_says_why_a_row_is_empty(tmp_path):
    from fcnlib import claims
    run = results.start_run("04_skip_fusion", tier="embedded", device="cpu", seed=0, results_dir=tmp_path, threads=1)
    with pytest.raises(KeyError, match="unknown claim"):
        run.claim("table9.nothing", ours=1, paper=2, verdict="reproduced")
    with pytest.raises(ValueError, match="tested by 00_tour"):
        run.claim("s5.metrics", ours=1, paper=2, verdict="reproduced")
    with pytest.raises(ValueError, match="needs its reason"):
        run.claim("table2.ordering", ours=1, paper=2, verdict="differs")
    with pytest.raises(ValueError, match="verdict 'yes'"):
        run.claim("table2.ordering", ours=1, paper=2, verdict="yes")
    run.claim("table2.ordering", ours="a < b", paper="a < b", verdict="reproduced", seeds=[0, 1, 2],
              spread=claims.spread([50.0, 52.0, 51.0]))
    rows = {r["id"]: r for r in report.ledger_rows(results.load_summary(tmp_path))}
    assert rows["table2.ordering"]["verdict"] == "reproduced" and rows["table2.ordering"]["spread"]["n"] == 3
    assert rows["table2.fixed"]["why"] == "its notebook has not finished before recording it"
    assert rows["s5.metrics"]["why"] == "its notebook has not run"
    md = report.render(results.load_summary(tmp_path))
    assert "| [0, 1, 2] | 51 (50–52, n=3) | **reproduced** |" in md
    assert md.index("04_skip_fusion: RUNNING") < md.index("## Claims ledger")   # not finished: at the top


def test_measured_verdicts():
    from fcnlib import claims
    assert claims.measured("smoke", True) == "not run in this tier"
    assert claims.measured("embedded", True, seeds=[0, 1, 2]) == "reproduced"
    assert claims.measured("embedded", True, seeds=[0]) == "trend reproduced"      # no spread to hold it to
    assert claims.measured("embedded", False, partly=True) == "trend reproduced"
    assert claims.measured("embedded", False) == "differs"


def test_auto_threads_follow_the_cores_not_the_load(monkeypatch):
    """A measured thread count would let the machine's load change a run's numbers: "auto" is every usable
    core (or FCN_THREADS), and only "fastest" (benchmarks) measures."""
    from fcnlib import runtime
    monkeypatch.delenv("FCN_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 3)
    monkeypatch.setattr(runtime, "choose_threads", lambda *a, **k: pytest.fail("auto must not measure"))
    n = torch.get_num_threads()
    try:
        assert runtime.set_threads("auto") == 3 == torch.get_num_threads()
        monkeypatch.setenv("FCN_THREADS", "1")
        assert runtime.set_threads("auto") == 1
    finally:
        torch.set_num_threads(n)


def test_busy_machine_gets_a_short_openmp_spin(monkeypatch):
    """The runner shortens OpenMP's spin only when others keep half a core busy, and never over the
    user's own setting; the spin count changes no number, only how waiting threads wait."""
    from fcnlib import runtime
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert runtime.spin_env(0.2) == {}
    assert runtime.spin_env(1.0) == {"GOMP_SPINCOUNT": runtime.BUSY_SPINCOUNT}
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert runtime.spin_env(1.0) == {}
    busy = runtime.busy_cores(0.05)
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 1e-9
