"""Every notebook follows the conventions and runs in the smoke tier through papermill.

The executed notebooks land in the session's smoke folder (the ``smoke_results`` fixture, never the
checkout), where tests/test_browser.py reopens them in JupyterLab.
"""
import importlib.util
import shutil

import nbformat
import pytest

from fcnlib import paths, report, reproduce
from fcnlib.results import load_summary

NOTEBOOKS = reproduce.notebooks()

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
def smoke_dir(smoke_results):
    out = smoke_results / "notebooks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_in_smoke_tier(nb, smoke_dir, smoke_results):
    status, secs, detail = reproduce.run_one(nb, "smoke", smoke_dir, smoke_results, "cpu", timeout=300)
    assert status == "ok", f"{nb.name} {status} in the smoke tier: {detail}"
    entry = load_summary(smoke_results)[nb.stem]
    assert entry["_run"]["status"] == "ok" and entry["_run"]["tier"] == "smoke"
    assert len(entry) > 1, f"{nb.stem} recorded no figures"


MAX_LINES = 40   # a printed output longer than this is a wall a learner scrolls past


def _printed(output) -> str:
    if output.output_type == "stream":
        return output.text
    data = output.get("data", {})
    if output.output_type in ("execute_result", "display_data") and set(data) <= {"text/plain"}:
        return data.get("text/plain", "")
    return ""


@pytest.mark.notebooks
def test_outputs_are_what_a_learner_reads(smoke_dir):
    """No printed output over MAX_LINES lines, and no stray reprs (a bare True / False, a PosixPath, a
    record's dict) in the executed smoke notebooks."""
    walls = []
    for nb in NOTEBOOKS:
        executed = nbformat.read(smoke_dir / nb.name, as_version=4)
        for i, cell in enumerate(c for c in executed.cells if c.cell_type == "code"):
            for out in cell.get("outputs", []):
                text = _printed(out)
                lines = text.rstrip("\n").count("\n") + 1 if text.strip() else 0
                stray = text.strip() in ("True", "False") or "PosixPath(" in text or text.startswith("{'_run'")
                if lines > MAX_LINES or stray:
                    walls.append(f"{nb.stem} code cell {i}: {lines} lines: {text[:80]!r}")
    assert not walls, "\n".join(walls)


@pytest.mark.notebooks
def test_report_renders_after_the_smoke_run(smoke_dir, smoke_results):
    text = report.write(smoke_results).read_text()
    for nb in NOTEBOOKS:
        assert f"## {nb.stem}" in text


@pytest.mark.notebooks
def test_ledger_holds_to_summary(smoke_dir, smoke_results):
    """REPORT.md's claims ledger says what summary.json says: every registered claim was recorded by its
    notebook in the smoke run, and its row shows that record's values and verdict."""
    from fcnlib import claims
    summary = load_summary(smoke_results)
    text = report.write(smoke_results).read_text()
    ledger = text[text.index("## Claims ledger"):text.index("## Runs")]
    rows = [line for line in ledger.splitlines() if line.startswith("| §") or line.startswith("| Table")
            or line.startswith("| Appendix")]
    assert len(rows) == len(claims.CLAIMS)
    for c, line in zip(claims.CLAIMS, rows):
        rec = summary[c.notebook]["_claims"][c.id]
        assert rec["tier"] == "smoke" and rec["verdict"] in claims.VERDICTS
        assert f"**{rec['verdict']}**" in line and c.claim.replace("|", "\\|") in line
        assert report._cell(report._fmt(rec["ours"])) in line and f"notebooks/{c.notebook}.ipynb" in line
    assert {c.id for c in claims.CLAIMS} == {i for e in summary.values() for i in e.get("_claims", {})}


NONTIMING_SKIP = {"train_time_s", "step_ms_per_image", "cpu_time_s"}


def _figures(entry):
    return {k: v for k, v in entry.items() if k not in NONTIMING_SKIP | {"_run"}}


@pytest.mark.notebooks
def test_same_seed_same_figures_whatever_the_conditions(tmp_path, monkeypatch):
    """Notebook 04 (smoke) twice with the same seed: once plainly with FCN_THREADS=1; once with the thread
    count left to the library (one usable core), another hash seed, and half of the stages' checkpoints
    already on disk (loaded, not trained) — every recorded figure but the timings is the same."""
    import os
    nb = paths.ROOT / "notebooks" / "04_skip_fusion.ipynb"
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("FCN_THREADS", "1")
    status, _, detail = reproduce.run_one(nb, "smoke", tmp_path, a, "cpu", timeout=300)
    assert status == "ok", detail
    ckpts = a / "checkpoints" / "04_skip_fusion"
    kept = sorted(p.name for p in ckpts.iterdir() if p.name.startswith(("fcn32s_fixed-", "fcn32s-")))
    assert len(kept) == 2
    (b / "checkpoints" / "04_skip_fusion").mkdir(parents=True)
    for name in kept:
        shutil.copy(ckpts / name, b / "checkpoints" / "04_skip_fusion" / name)
    monkeypatch.delenv("FCN_THREADS")
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})       # the kernel inherits one usable core: "auto" → 1 thread
    try:
        status, _, detail = reproduce.run_one(nb, "smoke", tmp_path, b, "cpu", timeout=300)
    finally:
        os.sched_setaffinity(0, affinity)
    assert status == "ok", detail
    ea, eb = (load_summary(d)["04_skip_fusion"] for d in (a, b))
    assert ea["_run"]["threads"] == eb["_run"]["threads"] == 1
    assert _figures(ea) == _figures(eb)
