"""Recording results: atomic merges that parallel notebook runs cannot clobber; the report."""
import json
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
    entry = run.finish()
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
