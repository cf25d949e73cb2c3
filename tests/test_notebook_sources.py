"""Every notebook is built from its jupytext source (notebooks/NN_name.py) by tools/make_notebook.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _make_notebook():
    spec = importlib.util.spec_from_file_location("make_notebook", ROOT / "tools" / "make_notebook.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_notebook_has_a_source():
    assert NOTEBOOKS, "no notebooks found"
    missing = [nb.name for nb in NOTEBOOKS if not nb.with_suffix(".py").exists()]
    assert not missing, f"notebooks without a jupytext source: {missing}"
    orphans = [s.name for s in (ROOT / "notebooks").glob("[0-9][0-9]_*.py") if not s.with_suffix(".ipynb").exists()]
    assert not orphans, f"sources without a notebook (run `make notebooks`): {orphans}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_built_from_its_source(nb, tmp_path, capsys):
    out = tmp_path / nb.name
    _make_notebook().build(nb.with_suffix(".py"), out)
    assert out.read_text() == nb.read_text(), (
        f"{nb.name} differs from what {nb.with_suffix('.py').name} builds: edit the .py and run `make notebooks`")


def test_a_stale_notebook_is_caught(tmp_path):
    src = tmp_path / "99_x.py"
    src.write_text('# %% tags=["parameters"]\ntier = "embedded"\ndevice = "auto"\nseed = 0\nsolutions = False\n'
                   'results_dir = None\n\n# %%\nprint(1)\n')
    mk = _make_notebook()
    mk.build(src, tmp_path / "a.ipynb")
    src.write_text(src.read_text().replace("print(1)", "print(2)"))
    mk.build(src, tmp_path / "b.ipynb")
    assert (tmp_path / "a.ipynb").read_text() != (tmp_path / "b.ipynb").read_text()
