"""Run the whole course in batch: every notebook, in order, through papermill, then the report.

    python -m fcnlib.reproduce --tier embedded          # what `make reproduce` does
    python -m fcnlib.reproduce --tier smoke --only 00 03 --results /tmp/r

Each notebook runs with kernel ``python3`` in notebooks/, with the tier's parameters and a timeout,
and is written executed to results/notebooks/. A failed notebook is reported with its name and the
cell that failed; the others still run, and the exit status is non-zero if any failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import paths, report, tiers

NOTEBOOKS = paths.ROOT / "notebooks"
TIMEOUTS = {"smoke": 300, "embedded": 900, "paper": 7200}  # seconds per notebook


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
    """The first cell of an executed notebook that has an error output, as a short description."""
    import nbformat
    nb = nbformat.read(nb_path, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                src = cell.source.strip().splitlines()
                first = src[0] if src else ""
                return f"cell {i} ({first[:70]!r}): {out.get('ename')}: {out.get('evalue')}"[:600]
    return "no cell has an error output (the kernel may have died or timed out)"


def run_one(nb: Path, tier: str, out_dir: Path, results: Path, device: str, timeout: int,
            extra: dict | None = None, progress: bool = False) -> tuple[bool, float, str]:
    import papermill as pm
    out = out_dir / nb.name
    params = {"tier": tier, "device": device, "seed": 0, "solutions": True, "results_dir": str(results)}
    params.update(extra or {})
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3",
                            cwd=str(NOTEBOOKS), execution_timeout=timeout, progress_bar=progress,
                            log_output=False)
        return True, time.perf_counter() - t0, ""
    except Exception as e:  # papermill raises PapermillExecutionError with the failing cell
        detail = _failed_cell(out) if out.exists() else f"{type(e).__name__}: {e}"
        return False, time.perf_counter() - t0, detail


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tier", default="embedded", help="smoke | embedded | paper")
    p.add_argument("--device", default="auto", help="auto | cuda | mps | cpu")
    p.add_argument("--only", nargs="*", help="notebook numbers or stems, e.g. 00 04")
    p.add_argument("--results", default=None, help="results folder (default results/ or $FCN_RESULTS)")
    p.add_argument("--timeout", type=int, default=None, help="seconds per notebook")
    args = p.parse_args(argv)
    try:
        tiers.check_tier(args.tier)
    except ValueError as e:
        p.error(str(e))
    results = paths.results_dir(args.results).resolve()
    os.environ["FCN_RESULTS"] = str(results)
    out_dir = results / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout or TIMEOUTS[args.tier]
    nbs = notebooks(args.only)
    from tqdm.auto import tqdm
    failures, t_all = [], time.perf_counter()
    bar = tqdm(nbs, desc=f"course ({args.tier})", unit="notebook")
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        ok, secs, detail = run_one(nb, args.tier, out_dir, results, args.device, timeout)
        status = "ok" if ok else "FAILED"
        tqdm.write(f"{status:6s} {nb.stem:32s} {secs:7.1f} s" + ("" if ok else f"\n       {detail}"))
        if not ok:
            failures.append((nb.stem, detail))
    path = report.write(results)
    print(f"\n{len(nbs) - len(failures)}/{len(nbs)} notebooks ran in {time.perf_counter() - t_all:.0f} s; "
          f"executed notebooks in {out_dir}, report in {path}")
    for stem, detail in failures:
        print(f"FAILED {stem}: {detail}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
