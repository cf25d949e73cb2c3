"""Where things live, and writes that never leave a half-written file behind.

results/ and data/cache/ are git-ignored; data/reference/ holds the small files shipped with the
course (the reference implementation's split lists and class names, one real VOC sample, a copy of
the paper's facts). ``FCN_RESULTS``, ``FCN_CACHE`` and ``FCN_DATA`` move them elsewhere. Only
:func:`results_dir` creates its folder when asked for it; the cache folder appears when something is
written there.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    path = Path(os.environ.get("FCN_DATA", ROOT / "data"))
    if not path.is_dir():
        raise FileNotFoundError(f"the data directory {path} does not exist: "
                                + ("fix or unset FCN_DATA" if "FCN_DATA" in os.environ
                                   else "the checkout is incomplete; clone the repository again"))
    return path


def reference_dir() -> Path:
    return data_dir() / "reference"


def cache_dir() -> Path:
    """Where derived files may be cached (``FCN_CACHE``, default data/cache). Not created here: a writer
    makes the folders it writes into (:func:`atomic_write_bytes` does), so reading creates nothing."""
    return Path(os.environ.get("FCN_CACHE", data_dir() / "cache"))


def results_dir(path: str | os.PathLike | None = None) -> Path:
    path = Path(path) if path else Path(os.environ.get("FCN_RESULTS", ROOT / "results"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    """Where real datasets are looked for (``FCN_DATASETS``, default data/datasets)."""
    return Path(os.environ.get("FCN_DATASETS", data_dir() / "datasets"))


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file: a crash mid-write leaves the old file intact."""
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
