"""Every notebook follows the conventions and runs in the smoke tier through papermill.

The executed notebooks land in results/smoke/notebooks/, where `make test` then runs
`pytest --nbval-lax` on them (re-executing each and comparing the outputs of the cells marked
NBVAL_CHECK_OUTPUT).
"""
import importlib.util
import shutil

import nbformat
import pytest

from fcnlib import paths, report, reproduce
from fcnlib.results import load_summary

NOTEBOOKS = reproduce.notebooks()
SMOKE = paths.ROOT / "results" / "smoke"

_spec = importlib.util.spec_from_file_location("make_notebook", paths.ROOT / "tools" / "make_notebook.py")
make_notebook = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_notebook)


def test_notebooks_exist_in_course_order():
    stems = [nb.stem for nb in NOTEBOOKS]
    assert stems and stems[0].startswith("00_")
    numbers = [int(s[:2]) for s in stems]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_conventions(nb):
    """One parameters cell first, kernel python3, no committed outputs (the output-in-git policy)."""
    assert make_notebook.check(nbformat.read(nb, as_version=4)) == []


@pytest.fixture(scope="module")
def smoke_dir():
    out = SMOKE / "notebooks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_in_smoke_tier(nb, smoke_dir):
    ok, secs, detail = reproduce.run_one(nb, "smoke", smoke_dir, SMOKE, "cpu", timeout=300)
    assert ok, f"{nb.name} failed in the smoke tier: {detail}"
    entry = load_summary(SMOKE)[nb.stem]
    assert entry["_run"]["status"] == "ok" and entry["_run"]["tier"] == "smoke"
    assert len(entry) > 1, f"{nb.stem} recorded no figures"


@pytest.mark.notebooks
def test_report_renders_after_the_smoke_run(smoke_dir):
    text = report.write(SMOKE).read_text()
    for nb in NOTEBOOKS:
        assert f"## {nb.stem}" in text
