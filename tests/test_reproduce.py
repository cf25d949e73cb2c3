"""The papermill runner writes each notebook's real outcome: ok, failed (the source cell's number, its
first line and the error), timeout; a failed rerun keeps the last complete results marked stale; the
device is checked before any kernel starts; the closing line says how many notebooks ran."""
import json

import nbformat
import pytest
import torch

from fcnlib import paths, report, reproduce
from fcnlib.results import load_summary

START = ('import fcnlib\nrun = fcnlib.start_run("{stem}", tier=tier, device=device, seed=seed, '
         'results_dir=results_dir, threads=1)')


def _notebook(path, *bodies):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('tier = "embedded"\ndevice = "auto"\nseed = 0\nsolutions = False\n'
                                       'results_dir = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# a test notebook"), params]
    nb.cells += [nbformat.v4.new_code_cell(b.format(stem=path.stem)) for b in bodies]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _run(nb, tmp_path, timeout=120):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return reproduce.run_one(nb, "smoke", out, tmp_path, "cpu", timeout=timeout)


def test_ok_needs_the_notebooks_own_finish(tmp_path):
    good = _notebook(tmp_path / "10_good.ipynb", START, "run.record(answer=42)\nrun.finish()")
    status, _, detail = _run(good, tmp_path)
    assert (status, detail) == ("ok", "")
    entry = load_summary(tmp_path)["10_good"]
    assert entry["_run"]["status"] == "ok" and entry["answer"] == 42
    unfinished = _notebook(tmp_path / "12_unfinished.ipynb", START, "run.record(answer=1)")
    status, _, detail = _run(unfinished, tmp_path)
    assert status == "failed" and "run.finish()" in detail


def test_a_failed_rerun_keeps_the_last_results_marked_stale(tmp_path):
    nb = tmp_path / "11_flaky.ipynb"
    _notebook(nb, START, "run.record(answer=42)\nrun.finish()")
    assert _run(nb, tmp_path)[0] == "ok"
    # fails after start_run: the cell is counted in the source notebook (markdown included, papermill's
    # injected cell not), with its first line and the error
    _notebook(nb, START, "x = 1\nrun.record(answer=-1)\nraise ValueError('boom in the lesson')", "run.finish()")
    status, _, detail = _run(nb, tmp_path)
    assert status == "failed"
    assert detail.startswith("cell 4/5 ('x = 1')") and "ValueError: boom in the lesson" in detail
    entry = load_summary(tmp_path)["11_flaky"]
    assert entry["_run"]["status"] == "failed" and entry["_run"]["stale"] is True
    assert entry["answer"] == 42 and "boom" in entry["_run"]["error"]
    md = report.render(load_summary(tmp_path))
    assert md.index("11_flaky: FAILED") < md.index("## Claims ledger")       # failures at the top
    assert "boom in the lesson" in md and "**stale**" in md
    # fails before start_run (the kernel never reached it): not the old "ok" row
    _notebook(nb, "raise RuntimeError('no kernel for you')", START, "run.finish()")
    status, _, detail = _run(nb, tmp_path)
    assert status == "failed" and "cell 3/5" in detail and "no kernel for you" in detail
    entry = load_summary(tmp_path)["11_flaky"]
    assert entry["_run"]["status"] == "failed" and entry["_run"]["stale"] and entry["answer"] == 42
    # and a good run replaces all of it
    _notebook(nb, START, "run.record(answer=43)\nrun.finish()")
    assert _run(nb, tmp_path)[0] == "ok"
    entry = load_summary(tmp_path)["11_flaky"]
    assert entry["answer"] == 43 and entry["_run"]["status"] == "ok" and "stale" not in entry["_run"]
    assert "_previous" not in entry


def test_a_failure_without_earlier_results(tmp_path):
    nb = _notebook(tmp_path / "13_new.ipynb", START, "run.record(partial=1)\n1 / 0")
    status, _, detail = _run(nb, tmp_path)
    assert status == "failed" and "ZeroDivisionError" in detail
    entry = load_summary(tmp_path)["13_new"]
    assert entry["_run"]["status"] == "failed" and entry["_run"]["stale"] is False and entry["partial"] == 1


def test_a_timeout_is_reported_as_one(tmp_path, capfd):
    nb = _notebook(tmp_path / "14_slow.ipynb", START, "import time\ntime.sleep(60)")
    status, secs, detail = _run(nb, tmp_path, timeout=3)
    assert status == "timeout" and secs < 50
    assert "cell 4/4" in detail and "3 s limit" in detail and "KeyboardInterrupt" not in detail
    assert load_summary(tmp_path)["14_slow"]["_run"]["status"] == "timeout"
    assert "ZMQError" not in capfd.readouterr().err          # the kernel's noise goes to its log


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_the_device_is_checked_before_any_kernel_starts(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--tier", "smoke", "--device", "cuda", "--results", str(tmp_path)])
    assert e.value.code == 2 and "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "notebooks").exists()


def test_closing_line_says_how_many_ran(tmp_path, monkeypatch, capsys):
    nbs = [_notebook(tmp_path / "20_ok.ipynb", START, "run.finish()"),
           _notebook(tmp_path / "21_bad.ipynb", START, "raise KeyError('gone')")]
    monkeypatch.setattr(reproduce, "NOTEBOOKS", tmp_path)
    code = reproduce.main(["--tier", "smoke", "--device", "cpu", "--results", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert code == 1 and [p.stem for p in nbs] == ["20_ok", "21_bad"]
    assert "1 of 2 notebooks ran" in out.out and "21_bad (failed)" in out.out
    assert "FAILED 21_bad: cell 4/4" in out.err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["20_ok"]["_run"]["status"] == "ok" and summary["21_bad"]["_run"]["status"] == "failed"


def test_unknown_tier_and_notebook(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--tier", "huge"])
    assert "unknown tier 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no notebook matches"):
        reproduce.notebooks(["99"])


def test_missing_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("FCN_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="fix or unset FCN_DATA"):
        paths.data_dir()


def test_a_damaged_summary_is_named_and_set_aside(tmp_path):
    from fcnlib import results
    (tmp_path / "summary.json").write_text('{"00_tour": {"_run": ')
    with pytest.raises(results.CorruptSummaryError, match=r"summary\.json is not valid JSON.*delete"):
        load_summary(tmp_path)
    with pytest.warns(UserWarning, match="moved to"):
        results.merge_summary("00_tour", {"x": 1}, tmp_path)
    assert load_summary(tmp_path) == {"00_tour": {"x": 1}}
    assert len(list(tmp_path.glob("summary.json.corrupt-*"))) == 1
