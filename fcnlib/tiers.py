"""The three tiers a notebook runs in, chosen by its ``tier`` papermill parameter.

- ``smoke``: for the tests; seconds per notebook, tiny data, nothing asserted about quality.
- ``embedded`` (default): offline, on the procedurally generated scenes this course ships; the whole
  course in about a quarter of an hour on a 2-core CPU, and the paper's trends must show.
- ``paper``: the real datasets and ImageNet weights from the local cache, meant for a GPU.

Each notebook keeps its own numbers for each tier in its derived-values cell, using :func:`pick`.
"""
from __future__ import annotations

from pathlib import Path

TIERS = ("smoke", "embedded", "paper")


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}: use one of {', '.join(TIERS)} "
                         "(papermill: -p tier smoke)")
    return tier


def pick(tier: str, *, smoke, embedded, paper=None):
    """Return the value for ``tier``; ``paper`` defaults to the ``embedded`` value."""
    check_tier(tier)
    return {"smoke": smoke, "embedded": embedded, "paper": embedded if paper is None else paper}[tier]


class MissingAssetError(FileNotFoundError):
    """A real dataset or pretrained weight file needed by the ``paper`` tier is not on disk."""


def require(paths: dict[str, Path], how: str) -> None:
    """Raise :class:`MissingAssetError` listing every missing path and how to provide it."""
    missing = [f"  - {what}: {p}" for what, p in paths.items() if not Path(p).exists()]
    if missing:
        raise MissingAssetError(
            "the 'paper' tier needs files that are not on this machine:\n" + "\n".join(missing)
            + f"\n{how}\n(Nothing is downloaded at run time; run the 'embedded' tier to work offline.)")
