"""Reading benchmark data files: JSON arrays or JSON Lines, plain text lines, hub splits.

Conventions
-----------
* A data file holds either **one JSON array** of objects or **JSON Lines** (one object per
  line, blank lines ignored) — the upstream hub datasets mix both, so every reader accepts
  both. The format is decided by the first non-blank character (``[`` = array).
* A file may instead hold JSON **strings** (MUSE's ``raw/``, ``privleak/``, ``sust/``: one
  array of texts): :func:`read_texts` gives them as strings, :func:`read_records` as rows
  ``{"text": ...}``. A file's rows are all objects or all strings.
* A split read through :class:`SplitSource` must have rows: an empty file or ``[]`` is an
  error naming the file (a run would otherwise score zero items).
* Rows are numbered from 0 in file order (for JSON Lines: among the non-blank lines).
  Errors are :class:`~bench.errors.DataError` with one line naming the file, the row and,
  where it applies, the field; JSON Lines errors also give the 1-based line number.
* Provenance: :func:`sha256_file` is the hex SHA-256 of the file's bytes; a hub split is
  fingerprinted by :func:`records_sha256` (SHA-256 of its rows as canonical JSON Lines).
* :func:`load_hub_split` is the online path (``datasets.load_dataset``); it is never
  needed when a local data directory is given.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError, DataError

# Field kinds understood by :func:`require`.
STR = "str"  # a string (may be empty)
TEXT = "text"  # a non-empty string (after stripping)
STR_LIST = "str_list"  # a non-empty list of strings
INT = "int"
NUMBER = "number"
ANY = "any"  # present and not null

_KIND_NAMES = {
    STR: "a string",
    TEXT: "a non-empty string",
    STR_LIST: "a non-empty list of strings",
    INT: "an integer",
    NUMBER: "a number",
    ANY: "a value",
}

# Environment variables that switch the Hugging Face libraries offline.
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "not a file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(path, f"cannot read ({e.strerror})") from None


TEXT_KEY = "text"  # the field a text row (a JSON string) gets from :func:`read_records`


def _kind_of(obj: Any) -> str:
    return "object" if isinstance(obj, dict) else "string" if isinstance(obj, str) else type(obj).__name__


def _check_row(obj: Any, path: Path, row: int, first: Any, lineno: int | None = None) -> Any:
    """``obj`` if it is an object or a string, of the same kind as the file's row 0."""
    on_line = f" on line {lineno}" if lineno is not None else ""
    ok_first = isinstance(first, (dict, str))
    expected = _kind_of(first) if row > 0 and ok_first else "object or string"
    if not isinstance(obj, (dict, str)) or (row > 0 and ok_first and type(obj) is not type(first)):
        raise DataError(path, f"expected a JSON {expected}{on_line}, got {_kind_of(obj)}", row)
    return obj


def _read_array(text: str, path: Path) -> list[Any]:
    """Parse one JSON array element by element, so that an error names its row."""
    decoder = json.JSONDecoder()
    ws = " \t\n\r"
    pos = len(text) - len(text.lstrip(ws)) + 1  # just after '['
    out: list[Any] = []
    n = len(text)

    def skip(p: int) -> int:
        while p < n and text[p] in ws:
            p += 1
        return p

    def line_of(p: int) -> int:
        return text.count("\n", 0, p) + 1

    pos = skip(pos)
    if pos < n and text[pos] == "]":
        rest = skip(pos + 1)
        if rest != n:
            raise DataError(path, f"malformed JSON: extra data after the array on line {line_of(rest)}")
        return out
    while True:
        row = len(out)
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(
                path, f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})", row
            ) from None
        out.append(_check_row(obj, path, row, out[0] if out else obj))
        pos = skip(end)
        if pos >= n:
            raise DataError(path, "malformed JSON: the array is not closed", row)
        if text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if text[pos] == "]":
            rest = skip(pos + 1)
            if rest != n:
                raise DataError(
                    path, f"malformed JSON: extra data after the array on line {line_of(rest)}"
                )
            return out
        raise DataError(
            path, f"malformed JSON: expected ',' or ']' after row {row} (line {line_of(pos)})", row
        )


def _read_jsonl(text: str, path: Path) -> list[Any]:
    out: list[Any] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = len(out)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                path, f"malformed JSON Lines record on line {lineno}: {e.msg} (column {e.colno})", row
            ) from None
        out.append(_check_row(obj, path, row, out[0] if out else obj, lineno))
    return out


def _read_values(path: Path) -> list[Any]:
    """The rows of ``path`` as parsed JSON values: all objects or all strings."""
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped[0] == "[":
        return _read_array(text, path)
    return _read_jsonl(text, path)


def read_records(path: str | Path) -> list[dict]:
    """The rows (JSON objects) of ``path``: one JSON array or JSON Lines (blank lines ignored).

    A file of JSON strings (MUSE's ``raw/``, ``privleak/`` and ``sust/`` files: one array of
    texts) gives one row ``{"text": <string>}`` per string (:data:`TEXT_KEY`); see also
    :func:`read_texts`. Rows must all be objects or all strings. An empty file has no rows.
    Raises :class:`DataError` naming the file (and the row, and for JSON Lines the line
    number) when the file is missing, not UTF-8, malformed, or holds other values.
    """
    return [v if isinstance(v, dict) else {TEXT_KEY: v} for v in _read_values(Path(path))]


def read_texts(path: str | Path, field: str = TEXT_KEY, *, allow_blank: bool = True) -> list[str]:
    """The texts of ``path``, one per row, in file order: a file of JSON strings as is, or a
    file of objects their ``field`` (default ``"text"``; RWKU's ``positive.json``).

    ``allow_blank=False`` refuses empty / whitespace-only texts (MUSE's ``raw/forget.json``
    holds one, row 821, which its training keeps; the default keeps it too, so row numbers
    stay the file's). Raises :class:`DataError` naming the file, row and field.
    """
    path = Path(path)
    out: list[str] = []
    for row, v_raw in enumerate(_read_values(path)):
        v = v_raw
        if isinstance(v, dict):
            require(v, {field: STR}, path, row)
            v = v[field]
        if not allow_blank and not v.strip():
            raise DataError(path, "empty text", row, field if isinstance(v_raw, dict) else None)
        out.append(v)
    return out


def read_lines(path: str | Path) -> list[str]:
    """The non-blank lines of a plain-text file, stripped (e.g. TOFU's ``idontknow.jsonl``,
    which despite its suffix holds one plain sentence per line)."""
    path = Path(path)
    return [line.strip() for line in _read_text(path).splitlines() if line.strip()]


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == ANY:
        return value is not None
    if kind == STR:
        return isinstance(value, str)
    if kind == TEXT:
        return isinstance(value, str) and bool(value.strip())
    if kind == STR_LIST:
        return (
            isinstance(value, list)
            and len(value) > 0
            and all(isinstance(v, str) for v in value)
        )
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise ValueError(f"unknown field kind {kind!r}")


def require(
    record: Mapping[str, Any],
    fields: Mapping[str, str] | Iterable[str],
    path: str | Path,
    row: int | None = None,
) -> None:
    """Check that ``record`` has every field in ``fields`` with the right kind.

    ``fields`` maps a field name to a kind (:data:`STR`, :data:`TEXT`, :data:`STR_LIST`,
    :data:`INT`, :data:`NUMBER`, :data:`ANY`); a plain list of names means :data:`STR` for
    each. Raises ``DataError(path, "missing field", row, field)`` for an absent field, and
    ``DataError(path, "expected <kind>, got <type>", row, field)`` for a wrong one.
    """
    spec = dict(fields) if isinstance(fields, Mapping) else {f: STR for f in fields}
    for name, kind in spec.items():
        if name not in record:
            raise DataError(path, "missing field", row, name)
        value = record[name]
        if not _kind_ok(value, kind):
            got = "null" if value is None else type(value).__name__
            if isinstance(value, list) and kind == STR_LIST:
                got = "an empty list" if not value else "a list with a non-string element"
            raise DataError(path, f"expected {_KIND_NAMES[kind]}, got {got}", row, name)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def records_sha256(records: Sequence[Mapping[str, Any]]) -> str:
    """Hex SHA-256 of ``records`` as canonical JSON Lines (sorted keys, UTF-8, ``\\n``)."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def hub_offline() -> bool:
    """True when an environment variable tells the Hugging Face libraries to stay offline."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_ENVS)


def load_hub_split(repo: str, config: str | None, split: str = "train") -> list[dict]:
    """Rows of ``split`` of dataset ``repo`` (config ``config``) from the Hugging Face hub.

    This is the online path, used only when no local data directory is given. Raises a
    :class:`BenchError` (not a traceback) when the hub is switched off or unreachable.
    """
    what = f"{repo}" + (f" (config '{config}', split '{split}')" if config else f" (split '{split}')")
    hint = "pass --data-dir with a local copy of the data or set BENCH_DATA_DIR"
    if hub_offline():
        raise BenchError(f"cannot load {what} from the Hugging Face hub: HF_HUB_OFFLINE is set; {hint}")
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a declared dependency
        raise BenchError(f"cannot load {what}: the 'datasets' package is missing ({e}); {hint}") from None
    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as e:  # network, auth, missing config: all end the same way for the user
        msg = str(e).splitlines()[0] if str(e) else ""
        raise BenchError(
            f"cannot load {what} from the Hugging Face hub (unreachable or unknown: "
            f"{type(e).__name__}: {msg}); {hint}"
        ) from None
    return [dict(r) for r in ds]


def download_hub_file(repo: str, filename: str, repo_type: str = "dataset") -> Path:
    """Local path of ``filename`` from hub repository ``repo`` (downloaded into the HF cache).

    The online path for files that are not dataset configs (e.g. a refusal list). Raises a
    :class:`BenchError` when the hub is switched off or unreachable.
    """
    what = f"{filename} of {repo}"
    hint = "pass --data-dir with a local copy of the data or set BENCH_DATA_DIR"
    if hub_offline():
        raise BenchError(f"cannot download {what} from the Hugging Face hub: HF_HUB_OFFLINE is set; {hint}")
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=repo, filename=filename, repo_type=repo_type))
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise BenchError(
            f"cannot download {what} from the Hugging Face hub (unreachable or unknown: "
            f"{type(e).__name__}: {msg}); {hint}"
        ) from None


def data_hint(hint: str) -> Any:
    """Decorator for a task's ``load``: a :class:`DataError` it raises (a missing split, row
    or field, named by file / row / field) gets ``hint`` appended, i.e. what to do (which
    upstream copy to use), once."""
    import functools

    def wrap(load: Any) -> Any:
        @functools.wraps(load)
        def inner(self: Any, data_dir: Any = None, *args: Any, **kwargs: Any) -> Any:
            try:
                return load(self, data_dir, *args, **kwargs)
            except DataError as e:
                if e.hinted:
                    raise
                err = DataError(e.path, f"{e.message}; {hint}", e.row, e.field)
                err.hinted = True
                raise err from None
        return inner
    return wrap


def given_data_dir(data_dir: str | Path | None, envs: Sequence[str] = ("BENCH_DATA_DIR",)) -> Path | None:
    """``data_dir``, else the first set variable among ``envs``, as an existing folder;
    ``None`` when neither is given (the hub path). Raises :class:`DataError` when it is not a folder."""
    if data_dir is None:
        data_dir = next((v for v in (os.environ.get(e, "").strip() for e in envs) if v), None)
        if data_dir is None:
            return None
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(root, "data directory not found")
    return root


def resolve_data_dir(
    data_dir: str | Path | None,
    subdir: str,
    marker: str,
    envs: Sequence[str] = ("BENCH_DATA_DIR",),
) -> Path | None:
    """The local folder of one benchmark, or ``None`` for the hub path.

    ``data_dir`` (else the first set variable among ``envs``) may point at the benchmark's
    folder itself (it holds ``marker``) or at its parent (it holds ``subdir/marker``).
    Raises :class:`DataError` when the given folder is neither.
    """
    root = given_data_dir(data_dir, envs)
    if root is None:
        return None
    if (root / marker).is_file():
        return root
    if (root / subdir / marker).is_file():
        return root / subdir
    raise DataError(root, f"neither '{marker}' nor '{subdir}/{marker}' is in this data directory")


class SplitSource:
    """Reads named splits of one benchmark from a local folder or from the hub.

    Local: split ``name`` is the file ``<folder>/<name>.json`` (or ``.jsonl``); every file
    read is recorded in :attr:`files` as ``"<folder name>/<file name>" -> sha256``, i.e.
    relative to the parent data directory (``tofu/forget01.json``). Hub: split ``name`` is
    the hub config ``name`` of ``hub_repo`` (split "train"), recorded as
    ``"hub:<repo>/<name>" -> sha256 of its rows``. A name ``"<subset>/<split>"`` (MUSE's
    layout) is the file ``<folder>/<subset>/<split>.json``, key ``muse_news/<subset>/<split>.json``,
    and on the hub split ``split`` of config ``subset``.
    """

    def __init__(self, folder: Path | None, hub_repo: str):
        self.folder = folder
        self.hub_repo = hub_repo
        self.files: dict[str, str] = {}

    @property
    def source(self) -> str:
        return str(self.folder) if self.folder is not None else f"hub:{self.hub_repo}"

    def where(self, name: str) -> Path | str:
        """Where split ``name`` comes from, for error messages: its file, or ``hub:<repo>/<name>``."""
        return self.path(name) if self.folder is not None else f"hub:{self.hub_repo}/{name}"

    def key(self, name: str) -> str:
        """The provenance key of split ``name`` (``tofu/forget01.json`` or ``hub:<repo>/<name>``)."""
        if self.folder is None:
            return f"hub:{self.hub_repo}/{name}"
        return f"{self.folder.name}/{self.path(name).relative_to(self.folder).as_posix()}"

    def hub_rows(self, name: str) -> list[dict]:
        """The rows of hub split ``name`` (config ``name``, split "train"; or ``subset/split``), recorded."""
        config, _, split = name.rpartition("/") if "/" in name else (name, "", "train")
        rows = load_hub_split(self.hub_repo, config, split)
        self.files[self.key(name)] = records_sha256(rows)
        return rows

    def path(self, name: str) -> Path:
        assert self.folder is not None
        for suffix in (".json", ".jsonl"):
            p = self.folder / f"{name}{suffix}"
            if p.is_file():
                return p
        raise DataError(self.folder / f"{name}.json", "file not found")

    def records(self, name: str, *, allow_empty: bool = False) -> list[dict]:
        """The rows of split ``name``. A split without rows (an empty file, ``[]``) is a
        :class:`DataError` naming its file unless ``allow_empty``: a benchmark's split is
        never empty, and an empty one would make a run score (or train on) nothing."""
        if self.folder is None:
            rows = self.hub_rows(name)
        else:
            p = self.path(name)
            rows = read_records(p)
            self.files[self.key(name)] = sha256_file(p)
        if not rows and not allow_empty:
            raise DataError(self.where(name), "no rows (an empty file or an empty array)")
        return rows

    def texts(self, name: str, field: str = TEXT_KEY) -> list[str]:
        """The texts of split ``name`` (:func:`read_texts` on its file; on the hub path the
        rows' ``field``); an empty split is an error naming it, as in :meth:`records`."""
        if self.folder is None:
            rows = self.records(name)
            where = self.where(name)
            for i, r in enumerate(rows):
                require(r, {field: STR}, where, i)
            return [r[field] for r in rows]
        p = self.path(name)
        out = read_texts(p, field)
        self.files[self.key(name)] = sha256_file(p)
        if not out:
            raise DataError(p, "no rows (an empty file or an empty array)")
        return out

    def lines(self, filename: str, hub_file: tuple[str, str] | None = None) -> list[str]:
        """Plain-text lines of ``filename`` in the local folder; on the hub path, of
        ``hub_file = (repo, file name)`` of a hub dataset repository."""
        if self.folder is not None:
            p = self.folder / filename
            key = f"{self.folder.name}/{p.name}"
        elif hub_file is not None:
            p = download_hub_file(*hub_file)
            key = f"hub:{hub_file[0]}/{hub_file[1]}"
        else:
            raise BenchError(f"{filename} is not on the hub ({self.hub_repo}); pass --data-dir")
        out = read_lines(p)
        self.files[key] = sha256_file(p)
        return out
