"""REPORT.md: the claims ledger first, then what each notebook measured.

Rendered from results/summary.json alone (every value in it was computed by a notebook run):

1. notebooks that did not run to the end (failed, timed out, still marked running), at the top;
2. the **claims ledger**: one row per claim of the paper that the course tests (``fcnlib.claims``),
   with the paper's figure, ours with its tier, seeds and spread, the verdict and its reason, and
   links to the executed notebook and the figure holding the evidence;
3. the runs (status, tier, device, wall time);
4. an appendix per notebook: ours beside the paper (``run.compare`` rows) and the key figures.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import claims, paths
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


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


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


def _spread(row: dict) -> str:
    s = row.get("spread")
    if not s:
        return "–"
    return f"{_fmt(s['mean'])} ({_fmt(s['min'])}–{_fmt(s['max'])}, n={s['n']})"


def ledger_rows(summary: dict) -> list[dict]:
    """One row per registered claim: the notebook's record of it, or why there is none."""
    rows = []
    for c in claims.CLAIMS:
        entry = summary.get(c.notebook)
        run = (entry or {}).get("_run", {})
        rec = (entry or {}).get("_claims", {}).get(c.id)
        row = {"id": c.id, "where": c.where, "claim": c.claim, "notebook": c.notebook, "figure": c.figure}
        if rec is None:
            status = {"failed": "failed", "timeout": "timed out", "running": "has not finished"}.get(
                run.get("status"), run.get("status"))
            why = ("its notebook has not run" if entry is None else
                   f"its notebook {status} before recording it" if run.get("status") != "ok"
                   else "its notebook did not record it")
            row.update(verdict="not run in this tier", why=why, ours=None, paper=None, tier=run.get("tier"),
                       seeds=None, spread=None)
        else:
            row.update(rec)
        row["stale"] = bool(run.get("stale")) and rec is not None
        rows.append(row)
    return rows


def render(summary: dict) -> str:
    lines = ["# Course report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from results/summary.json. Every value in "
             "the *ours* columns was computed by the run named; the *paper* column is read from "
             "PAPER-FACTS.md (Long, Shelhamer, Darrell, CVPR 2015).", ""]
    bad = {s: e["_run"] for s, e in sorted(summary.items()) if e.get("_run", {}).get("status") != "ok"}
    if bad:
        lines += ["## Notebooks that did not run to the end", ""]
        for stem, run in bad.items():
            stale = (f" Its figures below are **stale**: they are from the last complete run "
                     f"({run.get('stale_from', '?')}, {run.get('stale_tier', '?')} tier)." if run.get("stale") else "")
            lines.append(f"- **{stem}: {run.get('status', '?').upper()}** — {_cell(run.get('error', 'no error recorded'))}."
                         + stale)
        lines.append("")
    lines += ["## Claims ledger", "",
              "One row per claim of the paper that the course tests. *reproduced*: holds as stated; "
              "*trend reproduced*: the direction holds, the size differs; *differs*: does not hold here "
              "(the reason is given); *not run in this tier*: the tier's data cannot show it.", "",
              "| claim | paper | ours | tier | seeds | spread | verdict | evidence |", "|---|---|---|---|---|---|---|---|"]
    for r in ledger_rows(summary):
        verdict = f"**{r['verdict']}**" + (f" — {r['why']}" if r.get("why") else "") + (" *(stale)*" if r["stale"] else "")
        evidence = f"[{r['notebook']}](notebooks/{r['notebook']}.ipynb)"
        if r["figure"]:
            evidence += f", [{r['figure']}](figures/{r['notebook']}/{r['figure']}.png)"
        seeds = _fmt(r["seeds"]) if r.get("seeds") else "–"
        lines.append(f"| {_cell(r['where'])}: {_cell(r['claim'])} | {_cell(_fmt(r['paper']))} | {_cell(_fmt(r['ours']))} | "
                     f"{r.get('tier') or '–'} | {seeds} | {_spread(r)} | {_cell(verdict)} | {evidence} |")
    lines += ["", "## Runs", "", "| notebook | status | tier | device | wall time (s) |", "|---|---|---|---|---|"]
    for stem in sorted(summary):
        run = summary[stem].get("_run", {})
        status = run.get("status", "?") + (" (figures stale)" if run.get("stale") else "")
        lines.append(f"| {stem} | {status} | {run.get('tier', '?')} | {run.get('device', '?')} | "
                     f"{_fmt(run.get('wall_time_s'))} |")
    lines += ["", "## Appendix: what each notebook measured"]
    for stem in sorted(summary):
        entry = summary[stem]
        lines += ["", f"### {stem}", ""]
        compare = entry.get("_compare", [])
        if compare:
            lines += ["| quantity | ours | paper | unit | note |", "|---|---|---|---|---|"]
            lines += [f"| {r['name']} | {_fmt(r['ours'])} | {_fmt(r['paper'])} | {r.get('unit', '')} | "
                      f"{r.get('note', '')} |" for r in compare]
            lines.append("")
        rows = _flatten(entry)
        if rows:
            lines += ["| key figure | value |", "|---|---|"]
            lines += [f"| {k} | {_cell(_fmt(v))} |" for k, v in rows]
        figures = entry.get("_run", {}).get("figures", [])
        if figures:
            lines += ["", "Figures: " + ", ".join(f"[{Path(f).stem}]({f})" for f in figures)]
    return "\n".join(lines) + "\n"


def write(results_dir=None) -> Path:
    results = paths.results_dir(results_dir)
    return paths.atomic_write_text(results / "REPORT.md", render(load_summary(results)))


if __name__ == "__main__":
    print(write())
