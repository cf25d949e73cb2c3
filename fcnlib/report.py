"""REPORT.md: what each notebook measured, ours beside the paper's numbers.

Rendered from results/summary.json alone (every value in it was computed by a notebook run); the
paper's column comes from the ``run.compare`` rows, whose paper values were looked up in
PAPER-FACTS.md through ``fcnlib.paper``.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import paths
from .results import load_summary


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        inner = ", ".join(_fmt(x) for x in v[:8])
        return f"[{inner}{', …' if len(v) > 8 else ''}]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in list(v.items())[:8]) + ("…" if len(v) > 8 else "") + "}"
    return str(v)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        if k.startswith("_"):
            continue
        if isinstance(v, dict) and all(not isinstance(x, (dict, list)) for x in v.values()) and len(v) <= 12:
            rows += [(f"{prefix}{k}.{kk}", vv) for kk, vv in v.items()]
        elif isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append((prefix + k, v))
    return rows


def render(summary: dict) -> str:
    lines = ["# Course report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from results/summary.json. Every value in "
             "the *ours* columns was computed by the run named; the *paper* column is read from "
             "PAPER-FACTS.md (Long, Shelhamer, Darrell, CVPR 2015).", "",
             "| notebook | status | tier | device | wall time (s) |", "|---|---|---|---|---|"]
    for stem in sorted(summary):
        run = summary[stem].get("_run", {})
        lines.append(f"| {stem} | {run.get('status', '?')} | {run.get('tier', '?')} | {run.get('device', '?')} | "
                     f"{_fmt(run.get('wall_time_s'))} |")
    for stem in sorted(summary):
        entry = summary[stem]
        lines += ["", f"## {stem}", ""]
        compare = entry.get("_compare", [])
        if compare:
            lines += ["| quantity | ours | paper | unit | note |", "|---|---|---|---|---|"]
            lines += [f"| {r['name']} | {_fmt(r['ours'])} | {_fmt(r['paper'])} | {r.get('unit', '')} | "
                      f"{r.get('note', '')} |" for r in compare]
            lines.append("")
        rows = _flatten(entry)
        if rows:
            lines += ["| key figure | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in rows]
        figures = entry.get("_run", {}).get("figures", [])
        if figures:
            lines += ["", "Figures: " + ", ".join(f"[{Path(f).stem}]({f})" for f in figures)]
    return "\n".join(lines) + "\n"


def write(results_dir=None) -> Path:
    results = paths.results_dir(results_dir)
    return paths.atomic_write_text(results / "REPORT.md", render(load_summary(results)))


if __name__ == "__main__":
    print(write())
