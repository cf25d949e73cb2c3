"""Packaging: environment.yml in step with pyproject.toml; the paper's facts as shipped."""
import re
import tomllib
from pathlib import Path

import yaml

from fcnlib import paper, paths

ROOT = paths.ROOT


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {p for p in pip if not p.startswith("-e")}
    assert listed == set(project["dependencies"])
    assert any(p.startswith("-e .") for p in pip), "the project itself is installed through pip"
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert py.replace("python", "") == project["requires-python"]


def test_vendored_paper_facts_match_shared():
    shared = ROOT.parent / "shared" / "paper" / "PAPER-FACTS.md"
    vendored = paths.reference_dir() / "PAPER-FACTS.md"
    assert vendored.exists()
    if shared.exists():
        assert shared.read_text() == vendored.read_text(), "data/reference/PAPER-FACTS.md is stale: copy it again"


def test_paper_numbers_are_read_from_the_file():
    text = re.sub(r"\s+", " ", paper.text())
    t2 = paper.table2_rows()
    assert set(t2) == {"fcn32s_fixed", "fcn32s", "fcn16s", "fcn8s"}
    assert "| FCN-8s | 90.3 | 75.9 | 62.7 | 83.2 |" in paper.text()
    assert t2["fcn8s"] == {"pixel_acc": 90.3, "mean_acc": 75.9, "mean_iu": 62.7, "fw_iu": 83.2}
    assert paper.upper_bound()[32] == 86.1 and sorted(paper.upper_bound()) == [4, 8, 16, 32, 64, 128]
    assert paper.table1()["FCN-VGG16"]["rf size"] == 404
    timing = paper.timing()
    for v in timing.values():
        assert f"{v:g} ms" in text
