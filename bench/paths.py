"""Where the suite keeps things on disk, and how it writes them safely.

* Cache (prepared models, converted models, request cache, reference runs):
  ``$BENCH_CACHE`` or ``~/.cache/unlearning-bench``.
* Writes are atomic: a file is written to a temporary name in the same directory and
  renamed over the target, so a crash never leaves a half-written results file; a
  directory (a saved model) is written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    p = Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "unlearning-bench")
    p.mkdir(parents=True, exist_ok=True)
    return p


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def atomic_dir(path: Path):
    """Yield a temporary directory that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached_dir(path: Path, build: Callable[[Path], None]) -> Path:
    """``path`` if it exists, else ``build(tmpdir)`` then atomically moved to ``path``."""
    path = Path(path)
    if not path.exists():
        with atomic_dir(path) as tmp:
            build(tmp)
    return path
