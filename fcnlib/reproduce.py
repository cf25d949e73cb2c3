"""Run the whole course in batch: every notebook, in order, through papermill, then the report.

    python -m fcnlib.reproduce --tier embedded          # what `make reproduce` does
    python -m fcnlib.reproduce --tier smoke --only 00 03 --results /tmp/r

Each notebook runs with kernel ``python3`` in notebooks/, with the tier's parameters and a timeout,
and is written executed to results/notebooks/. A failed notebook is reported with its name and the
cell that failed; the others still run. Each notebook's outcome (``ok``, ``failed`` with the cell and
the error, ``timeout``) is written into summary.json; a notebook that fails keeps its last complete
results, marked stale. The device is checked before the first kernel starts; the closing line says
how many of the notebooks ran, and the exit status is non-zero if any did not.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from . import paths, report, runtime, tiers
from . import results as results_mod

NOTEBOOKS = paths.ROOT / "notebooks"
# seconds per cell (papermill's execution timeout): a hang is caught, a busy machine is not. The embedded
# tier's longest cell (notebook 04's training, about 8 minutes on a quiet 2-core CPU) ran about 4.6x slower
# per step with another process keeping one core busy, so an hour leaves it room.
TIMEOUTS = {"smoke": 300, "embedded": 3600, "paper": 7200}


def notebooks(only: list[str] | None = None) -> list[Path]:
    nbs = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = [nb for nb in nbs if any(nb.stem.startswith(o) or nb.stem == o for o in only)]
        unknown = [o for o in only if not any(nb.stem.startswith(o) for nb in nbs)]
        if unknown:
            raise SystemExit(f"no notebook matches {unknown}: the notebooks are {[nb.stem for nb in nbs]}")
        return wanted
    return nbs


def _failed_cell(nb_path: Path) -> str:
    """The first cell of an executed notebook with an error output: its number in the *source*
    notebook (the cells papermill inserts not counted; from 1, markdown included), its first
    line and the error."""
    import nbformat
    nb = nbformat.read(nb_path, as_version=4)
    added = {"injected-parameters", "papermill-error-cell-tag"}     # cells papermill inserts
    cells = [c for c in nb.cells if not added & set(c.get("metadata", {}).get("tags", []))]
    for i, cell in enumerate(cells, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                src = cell.source.strip().splitlines()
                first = src[0] if src else ""
                error = f"{out.get('ename')}: {out.get('evalue')}".strip().rstrip(":")
                return f"cell {i}/{len(cells)} ({first[:70]!r}): {error}"[:600]
    return "no cell has an error output (the kernel may have died)"


@contextmanager
def _kernel_stderr_to(log: Path):
    """Send what the kernel process writes to its stderr (ZMQ shutdown noise after a timeout) to
    ``log`` instead of the terminal: the kernel inherits file descriptor 2 when it starts."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _trust(nb, name: str) -> None:
    """Sign an executed notebook in this user's Jupyter notary (as ``jupyter trust`` does): the user's
    own run produced its outputs, so JupyterLab shows its widgets from their saved state on reopening
    rather than their text fallback."""
    from nbformat.sign import NotebookNotary
    try:
        NotebookNotary().sign(nb)
    except Exception as e:  # a read-only or locked notary database: the notebook still opens, untrusted
        print(f"(could not mark {name} as trusted: {type(e).__name__}: {e})")


def run_one(nb: Path, tier: str, out_dir: Path, results: Path, device: str, timeout: int,
            extra: dict | None = None, progress: bool = False) -> tuple[str, float, str]:
    """Execute one notebook; return (status, seconds, detail) with status ``ok``, ``failed`` or
    ``timeout``, and write that outcome into summary.json (:func:`fcnlib.results.set_outcome`)."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError
    out = out_dir / nb.name
    params = {"tier": tier, "device": device, "seed": 0, "solutions": True, "results_dir": str(results)}
    params.update(extra or {})
    run_id = f"{nb.stem}-{uuid.uuid4().hex[:12]}"
    os.environ["FCN_RUN_ID"] = run_id          # the kernel inherits it; start_run records it
    spin = runtime.spin_env(runtime.busy_cores())   # a busy machine: OpenMP threads sleep sooner
    os.environ.update(spin)
    status, detail = "ok", ""
    t0 = time.perf_counter()
    try:
        with _kernel_stderr_to(out_dir / f"{nb.stem}.kernel.log"):
            executed = pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3",
                                cwd=str(NOTEBOOKS), execution_timeout=timeout, progress_bar=progress,
                                log_output=False, extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except CellTimeoutError:
        status = "timeout"
        cell = _failed_cell(out).split(":")[0] if out.exists() else "a cell"
        detail = f"{cell} ran longer than the {timeout} s limit (--timeout SECONDS raises it)"
    except Exception as e:  # papermill raises PapermillExecutionError with the failing cell
        status = "failed"
        detail = _failed_cell(out) if out.exists() else f"{type(e).__name__}: {e}"
    finally:
        os.environ.pop("FCN_RUN_ID", None)
        for k in spin:
            os.environ.pop(k, None)
    secs = time.perf_counter() - t0
    if status == "ok":
        _trust(executed, out.name)   # what papermill wrote to `out`
    try:
        entry = results_mod.set_outcome(nb.stem, run_id, status, detail, results)
    except Exception as e:  # the outcome is still printed
        entry = {"_run": {"status": status, "error": f"{detail} (summary.json not updated: {e})"}}
    if status == "ok" and entry["_run"]["status"] != "ok":
        status, detail = entry["_run"]["status"], entry["_run"]["error"]
    return status, secs, detail


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tier", default="embedded", help="smoke | embedded | paper")
    p.add_argument("--device", default="auto", help="auto | cuda | mps | cpu")
    p.add_argument("--only", nargs="*", help="notebook numbers or stems, e.g. 00 04")
    p.add_argument("--results", default=None, help="results folder (default results/ or $FCN_RESULTS)")
    p.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: by tier, TIMEOUTS)")
    args = p.parse_args(argv)
    try:
        tiers.check_tier(args.tier)
        runtime.pick_device(args.device)        # before any kernel starts
    except (ValueError, RuntimeError) as e:
        p.error(str(e))
    results = paths.results_dir(args.results).resolve()
    os.environ["FCN_RESULTS"] = str(results)
    out_dir = results / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout or TIMEOUTS[args.tier]
    nbs = notebooks(args.only)
    from tqdm.auto import tqdm
    outcomes, t_all = {}, time.perf_counter()
    bar = tqdm(nbs, desc=f"course ({args.tier})", unit="notebook")
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        status, secs, detail = run_one(nb, args.tier, out_dir, results, args.device, timeout)
        outcomes[nb.stem] = (status, detail)
        tqdm.write(f"{status.upper() if status != 'ok' else 'ok':8s} {nb.stem:32s} {secs:7.1f} s"
                   + ("" if status == "ok" else f"\n         {detail}"))
    path = report.write(results)
    bad = {s: o for s, o in outcomes.items() if o[0] != "ok"}
    for stem, (status, detail) in bad.items():
        print(f"{status.upper()} {stem}: {detail}", file=sys.stderr)
    print(f"\n{len(nbs) - len(bad)} of {len(nbs)} notebooks ran ({args.tier} tier, "
          f"{time.perf_counter() - t_all:.0f} s)"
          + (f"; {len(bad)} did not: {', '.join(f'{s} ({o[0]})' for s, o in bad.items())}" if bad else "")
          + f". Executed notebooks in {out_dir}, report in {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
