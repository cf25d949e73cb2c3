"""The papermill runner reports a failed notebook with the cell that failed, and runs the rest."""
import nbformat
import pytest

from fcnlib import paths, reproduce


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('tier = "embedded"\ndevice = "auto"\nseed = 0\nsolutions = False\n'
                                       'results_dir = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_failed_cell_is_named(tmp_path):
    good = _notebook(tmp_path / "10_good.ipynb", "assert tier == 'smoke'")
    bad = _notebook(tmp_path / "11_bad.ipynb", "x = 1\nraise ValueError('boom in the lesson')")
    out = tmp_path / "out"
    out.mkdir()
    ok, _, detail = reproduce.run_one(good, "smoke", out, tmp_path, "cpu", timeout=120)
    assert ok and detail == ""
    ok, _, detail = reproduce.run_one(bad, "smoke", out, tmp_path, "cpu", timeout=120)
    assert not ok
    assert "ValueError: boom in the lesson" in detail and "x = 1" in detail


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
