"""Provenance recorded in every results.json: versions, model identity, hashes."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import bench


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "bench": bench.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }


# the files of a model directory that decide its answers (weights, configs, tokenizer);
# ``.bin`` is torch's checkpoint format (``pytorch_model.bin``, its shards), which
# :func:`bench.models.check_model_dir` accepts as weights
FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt")


def dir_fingerprint(path: Path | str) -> str:
    """sha256 over a model directory's weight/config/tokenizer files (names and bytes):
    :data:`FINGERPRINT_SUFFIXES`, i.e. safetensors and torch ``.bin`` weights (and their
    indexes), configs, chat templates, tokenizer files.

    ``bench_prepared.json`` (how ``prepare`` built it, with its timing) is a record, not
    content: it is left out, so a rebuilt model with the same weights has the same
    fingerprint. For a hub id (not a local directory) the id itself is returned: the hub
    pins content by revision, which the loader records.
    """
    p = Path(path)
    if not p.is_dir():
        return f"hub:{path}"
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.name == "bench_prepared.json":
            continue
        if f.is_file() and f.suffix in FINGERPRINT_SUFFIXES:
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()


def spec_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
