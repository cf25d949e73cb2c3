"""Build a course notebook from a jupytext percent-format script, the way every notebook is authored.

    python tools/make_notebook.py /tmp/04_skip_fusion.py notebooks/04_skip_fusion.ipynb

Sets the kernel to ``python3``, strips outputs, checks there is exactly one cell tagged
``parameters`` (the first code cell) holding ``tier``, ``device``, ``seed``, ``solutions`` and
``results_dir``. Write cells as ``# %%`` (code), ``# %% [markdown]`` and ``# %% tags=["parameters"]``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

REQUIRED_PARAMETERS = ("tier", "device", "seed", "solutions", "results_dir")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def check(nb) -> list[str]:
    """Problems with a notebook's conventions (empty when it follows them)."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells tagged 'parameters' (need exactly one)")
    elif code[0] is not tagged[0]:
        problems.append("the 'parameters' cell must be the first code cell")
    else:
        for name in REQUIRED_PARAMETERS:
            if f"{name} =" not in tagged[0].source:
                problems.append(f"parameter {name!r} missing from the parameters cell")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("kernel is not python3")
    if any(c.get("outputs") or c.get("execution_count") for c in code):
        problems.append("outputs are committed (the course commits notebooks without outputs)")
    return problems


def build(src: Path, dst: Path) -> None:
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:03d}"  # stable ids: the same source always builds the same file
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        meta = {k: v for k, v in cell.metadata.items() if k == "tags"}
        cell.metadata = meta
    problems = check(nb)
    if problems:
        sys.exit(f"{src}: " + "; ".join(problems))
    nbformat.validate(nb)
    dst.write_text(nbformat.writes(nb) + ("" if nbformat.writes(nb).endswith("\n") else "\n"))
    print(f"wrote {dst} ({len(nb.cells)} cells)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build(Path(sys.argv[1]), Path(sys.argv[2]))
