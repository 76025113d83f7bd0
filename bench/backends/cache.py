"""The dedupe + request-cache layer the engine wraps every backend with.

:class:`AnsweringLayer` answers a list of requests in order:

1. identical requests are answered once and fanned out (order kept, none lost);
2. each distinct request is looked up in a persistent cache keyed by
   :func:`cache_key` (model fingerprint, the backend's decoding-relevant settings, the
   request's kind and fields);
3. only misses go to the backend, in chunks (requests of one prompt kept together), and
   each chunk's responses are stored as soon as it is answered, so a crash keeps what
   was finished;
4. per request kind it counts requests, duplicates, hits, misses and computed answers;
5. per answering phase it records the backend's seconds (:meth:`AnsweringLayer.phases`):
   ``"loglikelihood+token_stats"`` (:data:`SCORE_PHASE`, one pass serving both kinds: the
   ``hf`` backend scores one forward item per distinct (prompt, continuation), stats
   added where any request of the pair wants them) and ``"generate"``, as the backend
   reports them in ``backend.last_phases`` after each call; a backend that does not
   report gets the whole call's time under the "+"-joined kinds of the call.

The store is one SQLite database (``responses.sqlite`` in WAL mode, safe for several
processes) under ``cache_dir``; ``cache_dir=None`` turns the persistent cache off (the
CLI's ``--no-cache``) and keeps the dedupe. Responses are stored with
:func:`bench.requests.to_json`; an unreadable row counts as a miss and is recomputed.

The settings in the key are ``backend.cache_settings()`` when the backend has it (the
``hf`` backend leaves out ``mode``, ``token_budget`` and ``batch_size``, which change only
scheduling and float rounding), else ``backend.settings()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.requests import Request, Response, from_json, to_json

DB_NAME = "responses.sqlite"
CHUNK = 2048  # distinct misses per backend call (and per commit)
COUNTERS = ("requests", "duplicates", "hits", "misses", "computed")
SCORE_PHASE = "loglikelihood+token_stats"  # the likelihood kinds, answered in one pass
_PHASE = {"loglikelihood": SCORE_PHASE, "token_stats": SCORE_PHASE}


def request_fields(request: Request) -> dict[str, Any]:
    """The request's kind and fields as a JSON-able dict (tuples become lists)."""
    d = dataclasses.asdict(request)
    d["kind"] = request.kind
    return d


def cache_key(fingerprint: str, settings: Mapping[str, Any], request: Request) -> str:
    """sha256 hex of the canonical JSON of (fingerprint, settings, request kind + fields)."""
    payload = {"model": fingerprint, "settings": dict(settings), "request": request_fields(request)}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _group_key(request: Request) -> tuple[str, str]:
    """Requests sharing a prompt sort together, so a chunk keeps a prompt's requests."""
    return (getattr(request, "prompt", ""), request.kind)


class AnsweringLayer:
    """Dedupe + persistent cache in front of ``backend`` (see the module docstring)."""

    def __init__(self, backend: Any, fingerprint: str, cache_dir: Path | str | None,
                 chunk_size: int = CHUNK):
        self.backend = backend
        self.fingerprint = fingerprint
        self.chunk_size = max(1, int(chunk_size))
        settings_fn = getattr(backend, "cache_settings", None) or backend.settings
        self.key_settings: dict[str, Any] = dict(settings_fn())
        self._counts: dict[str, Counter] = {}
        self._phases: dict[str, dict[str, Any]] = {}
        self._db: sqlite3.Connection | None = None
        self.path: Path | None = None
        if cache_dir is not None:
            self.path = Path(cache_dir) / DB_NAME
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(self.path), timeout=60.0)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL)"
                )
                self._db.commit()
            except sqlite3.Error as e:
                raise BenchError(f"{self.path}: cannot open the request cache ({e}); use --no-cache or another --cache-dir") from e

    # ------------------------------------------------------------------ public

    def answer(self, requests: Sequence[Request]) -> list[Response]:
        """One response per request, in order (identical requests answered once)."""
        distinct: dict[Request, int] = {}
        where: list[int] = []
        for r in requests:
            self._count(r.kind, "requests")
            j = distinct.get(r)
            if j is None:
                j = distinct[r] = len(distinct)
            else:
                self._count(r.kind, "duplicates")
            where.append(j)
        uniq = list(distinct)
        keys = [cache_key(self.fingerprint, self.key_settings, r) for r in uniq]
        answers: list[Response | None] = self._lookup(keys)
        miss = [j for j, a in enumerate(answers) if a is None]
        for j, a in enumerate(answers):
            self._count(uniq[j].kind, "hits" if a is not None else "misses")
        miss.sort(key=lambda j: _group_key(uniq[j]))
        for start in range(0, len(miss), self.chunk_size):
            part = miss[start:start + self.chunk_size]
            t0 = time.perf_counter()
            got = self.backend.answer([uniq[j] for j in part])
            self._time_phases([uniq[j] for j in part], time.perf_counter() - t0)
            if len(got) != len(part):
                raise BenchError(f"backend '{getattr(self.backend, 'name', '?')}' returned {len(got)} "
                                 f"responses for {len(part)} requests")
            for j, resp in zip(part, got):
                answers[j] = resp
                self._count(uniq[j].kind, "computed")
            self._store([(keys[j], uniq[j].kind, answers[j]) for j in part])
        return [answers[j] for j in where]  # type: ignore[misc]

    def stats(self) -> dict[str, dict[str, int]]:
        """Per request kind: requests, duplicates, hits, misses, computed (since creation)."""
        return {k: {c: int(v.get(c, 0)) for c in COUNTERS} for k, v in sorted(self._counts.items())}

    def phases(self) -> dict[str, dict[str, Any]]:
        """Per answering phase (module docstring, 5.): ``seconds`` of backend time,
        ``computed`` requests, and for the likelihood phase ``distinct_pairs``, the distinct
        (prompt, continuation) pairs among them (a ``loglikelihood`` and a ``token_stats``
        request of one pair are one forward item)."""
        out: dict[str, dict[str, Any]] = {}
        for name, d in sorted(self._phases.items()):
            row: dict[str, Any] = {"seconds": round(d["seconds"], 3), "computed": d["computed"]}
            if "pairs" in d:
                row["distinct_pairs"] = len(d["pairs"])
            out[name] = row
        return out

    def settings(self) -> dict[str, Any]:
        return self.backend.settings()

    def engines(self) -> dict[str, str]:
        return self.backend.engines()

    def close(self) -> None:
        """Close the store and the backend. Safe to call twice."""
        if self._db is not None:
            self._db.close()
            self._db = None
        self.backend.close()

    # ------------------------------------------------------------------ store

    def _count(self, kind: str, what: str) -> None:
        self._counts.setdefault(kind, Counter())[what] += 1

    def _time_phases(self, reqs: Sequence[Request], seconds: float) -> None:
        reported = getattr(self.backend, "last_phases", None)
        names = [_PHASE.get(r.kind, r.kind) for r in reqs]
        if not isinstance(reported, Mapping) or not set(names) <= set(reported):
            joint = "+".join(sorted({r.kind for r in reqs}))
            reported, names = {joint: seconds}, [joint] * len(reqs)
        for name, sec in reported.items():
            self._phases.setdefault(name, {"seconds": 0.0, "computed": 0})["seconds"] += float(sec)
        for name, r in zip(names, reqs):
            d = self._phases[name]
            d["computed"] += 1
            if name == SCORE_PHASE:
                d.setdefault("pairs", set()).add((r.prompt, r.continuation))  # type: ignore[union-attr]

    def _lookup(self, keys: Sequence[str]) -> list[Response | None]:
        out: list[Response | None] = [None] * len(keys)
        if self._db is None or not keys:
            return out
        pos = {k: i for i, k in enumerate(keys)}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            q = f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(part))})"
            for k, v in self._db.execute(q, part):
                try:
                    out[pos[k]] = from_json(json.loads(v))
                except (ValueError, KeyError, TypeError):
                    out[pos[k]] = None  # unreadable row: recompute and overwrite
        return out

    def _store(self, rows: Sequence[tuple[str, str, Response | None]]) -> None:
        if self._db is None or not rows:
            return
        data = [(k, kind, json.dumps(to_json(r), ensure_ascii=False)) for k, kind, r in rows if r is not None]
        with self._db:  # one transaction per chunk
            self._db.executemany("INSERT OR REPLACE INTO responses (key, kind, value) VALUES (?, ?, ?)", data)
