"""The paper's own numbers, read from PAPER-FACTS.md — the paper's column in every comparison.

``table("Table 2")`` parses a markdown table of PAPER-FACTS.md into ``{row: {column: value}}``;
``value("Table 2", "FCN-8s", "mean IU")`` returns one number. Prose facts (the §3.1 timings) are
parsed from their sentence with a pattern, so a typo can't sneak in: a test holds them to the file.
The file is looked up in ../shared/paper/ beside the checkout, then in data/reference/ (a copy).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from . import paths


def facts_path() -> Path:
    for p in (paths.ROOT.parent / "shared" / "paper" / "PAPER-FACTS.md",
              paths.reference_dir() / "PAPER-FACTS.md"):
        if p.exists():
            return p
    raise FileNotFoundError("PAPER-FACTS.md not found in ../shared/paper/ or data/reference/")


@functools.lru_cache(maxsize=None)
def text() -> str:
    return facts_path().read_text(encoding="utf-8")


def _number(cell: str):
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|M)?\s*", cell)
    return float(m.group(1)) if m else cell.strip()


@functools.lru_cache(maxsize=None)
def table(heading: str) -> dict:
    """The first markdown table under the ``## <heading>…`` section, as ``{row: {column: value}}``.

    A table whose header row names factors (Appendix A) is returned as ``{row: {factor: value}}``.
    """
    lines = text().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("## ") and l[3:].startswith(heading)), None)
    if start is None:
        raise KeyError(f"no section starting with {heading!r} in {facts_path()}")
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    if len(rows) < 3:
        raise KeyError(f"section {heading!r} has no table")
    header, body = rows[0], [r for r in rows[2:]]
    return {r[0]: {h: _number(c) for h, c in zip(header[1:], r[1:])} for r in body}


def value(heading: str, row: str, column: str) -> float:
    """One number of a table, e.g. ``value("Table 2", "FCN-8s", "mean IU")`` → 62.7."""
    t = table(heading)
    rows = [k for k in t if k == row or k.startswith(row + " ")]
    if not rows:
        raise KeyError(f"{heading}: no row {row!r}; rows are {list(t)}")
    return t[rows[0]][column]


def table2_rows() -> dict:
    """Table 2 keyed by our model names: fcn32s_fixed, fcn32s, fcn16s, fcn8s."""
    t = table("Table 2")
    names = {"FCN-32s-fixed": "fcn32s_fixed", "FCN-32s": "fcn32s", "FCN-16s": "fcn16s", "FCN-8s": "fcn8s"}
    out = {}
    for row, vals in t.items():
        key = names.get(row.split(" (")[0])
        if key:
            out[key] = {"pixel_acc": vals["pixel acc."], "mean_acc": vals["mean acc."],
                        "mean_iu": vals["mean IU"], "fw_iu": vals["f.w. IU"]}
    return out


def upper_bound() -> dict[int, float]:
    """Appendix A: mean IU upper bound per downsampling factor."""
    t = table("Appendix A")
    return {int(k): v for k, v in t["mean IU"].items()}


def table1() -> dict:
    """Table 1 as ``{network: {row: value}}`` (networks FCN-AlexNet, FCN-VGG16, FCN-GoogLeNet)."""
    t = table("Table 1")
    nets = list(next(iter(t.values())).keys())
    return {n: {row: t[row][n] for row in t} for n in nets}


def timing() -> dict[str, float]:
    """Section 3.1's AlexNet timings in ms, parsed from their sentences."""
    s = re.sub(r"\s+", " ", text())
    m1 = re.search(r"one 227×227 image in ([0-9.]+) ms", s)
    m2 = re.search(r"10×10 grid of outputs from a 500×500 image in ([0-9.]+) ms", s)
    m3 = re.search(r"Backward: ([0-9.]+) ms for one image, ([0-9.]+) ms for the 10×10 map", s)
    if not (m1 and m2 and m3):
        raise KeyError("Section 3.1 timing sentences not found in PAPER-FACTS.md")
    return {"forward_single_ms": float(m1.group(1)), "forward_dense_ms": float(m2.group(1)),
            "backward_single_ms": float(m3.group(1)), "backward_dense_ms": float(m3.group(2))}


def crop_offsets() -> dict[str, dict[str, int]]:
    """The reference implementation's crop offsets for the VGG16 FCNs, parsed from their sentence:
    ``{"fcn32s": {"final": 19}, "fcn16s": {"pool4": 5, "final": 27}, "fcn8s": {…}}``."""
    s = re.sub(r"\s+", " ", text())
    m = re.search(r"FCN-32s final crop [0-9]+;.*?final crop [0-9]+\.", s)
    if not m:
        raise KeyError("the crop-offset sentence (FCN-32s final crop …) not found in PAPER-FACTS.md")
    return {f"fcn{net}s": {k: int(v) for k, v in re.findall(r"(\w+) crop ([0-9]+)", body)}
            for net, body in re.findall(r"FCN-([0-9]+)s ([^;.]*)", m.group(0))}
