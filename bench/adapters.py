"""Finding a method adapter and turning ``--set key=value`` strings into its typed options.

A method is a function ``unlearn(model, forget, retain, *, <options>) -> ModelBundle``.
Its options are the parameters after the first three, each with a type annotation and a
default (a parameter without a default is a required option). Supported annotations:
``int``, ``float``, ``bool`` (``true/false/1/0/yes/no``), ``str``, ``Literal[...]`` choices,
and ``X | None`` (the string ``none`` or ``null`` gives ``None``).

Shared option groups: a parameter annotated with a dataclass and given an instance as its
default (``train: TrainOptions = TrainOptions(lr=5e-5)``) contributes its fields as flat
options with that instance's values as defaults, so training options are declared once
(:class:`bench.training.TrainOptions`) and a method's signature shows only its own.
:func:`bind_options` turns flat options back into the call's keyword arguments (the
group rebuilt with ``dataclasses.replace``). A field name equal to another option of the
same method is an error.

A method is named either by its registry name (``bench list methods``), by
``path/to/file.py:function`` (a user adapter loaded from that file), or by
``package.module:function`` (an importable module).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

from bench.errors import BenchError
from bench.registry import METHODS

REQUIRED = inspect.Parameter.empty  # the "default" of an option without one
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def resolve_method(spec: str) -> tuple[str, Callable[..., Any]]:
    """``(name, function)`` for a registered method name or ``file.py:function`` /
    ``module:function``; the name is ``spec`` itself. BenchError if it cannot be found."""
    if ":" in spec and spec not in METHODS:
        target, _, func = spec.rpartition(":")
        if not target or not func:
            raise BenchError(f"method '{spec}': expected path/to/file.py:function")
        if target.endswith(".py") or "/" in target or "\\" in target:
            module = _load_file(Path(target), spec)
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as e:
                raise BenchError(f"method '{spec}': cannot import module '{target}': {e}") from e
        fn = getattr(module, func, None)
        if fn is None:
            names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
            close = difflib.get_close_matches(func, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise BenchError(f"method '{spec}': {target} has no function '{func}'{hint}")
        if not callable(fn):
            raise BenchError(f"method '{spec}': '{func}' in {target} is not callable")
        _check_signature(spec, fn)
        return spec, fn
    fn = METHODS.get(spec)
    return spec, fn


def _load_file(path: Path, spec: str) -> types.ModuleType:
    if not path.is_file():
        raise BenchError(f"method '{spec}': file not found: {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"bench_user_method_{path.stem}_{digest}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise BenchError(f"method '{spec}': cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise BenchError(f"method '{spec}': {path} failed to import: {type(e).__name__}: {e}") from e
    return module


def _check_signature(spec: str, fn: Callable[..., Any]) -> None:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as e:
        raise BenchError(f"method '{spec}': cannot read its signature: {e}") from e
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise BenchError(f"method '{spec}': must take (model, forget, retain, *, options...)")


def _groups(fn: Callable[..., Any], positional: int = 3) -> dict[str, tuple[Any, Any]]:
    """``{parameter: (annotation, default)}`` of ``fn``'s option parameters (unflattened)."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    out: dict[str, tuple[Any, Any]] = {}
    positional_seen = 0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and positional_seen < positional:
            positional_seen += 1
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY) or p.name == "ctx":
            continue
        tp = hints.get(p.name, p.annotation)
        if tp is inspect.Parameter.empty or isinstance(tp, str):
            tp = type(p.default) if p.default is not REQUIRED and p.default is not None else str
        out[p.name] = (tp, p.default)
    return out


def _is_group(tp: Any, default: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(default, tp)


def method_options(fn: Callable[..., Any], positional: int = 3) -> dict[str, tuple[Any, Any]]:
    """``{option: (type, default)}`` for the parameters after the first ``positional`` ones
    (a method's ``(model, forget, retain)``; a backend's ``__init__(self, bundle)``: 2);
    ``default`` is :data:`REQUIRED` when there is none. The type is the resolved annotation
    (or the default's type when unannotated; ``str`` when neither exists). A dataclass
    group parameter is replaced by its fields (module docstring); ``ctx`` is not an option."""
    out: dict[str, tuple[Any, Any]] = {}
    for name, (tp, default) in _groups(fn, positional).items():
        if not _is_group(tp, default):
            out[name] = (tp, default)
            continue
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            if f.name in out:
                raise BenchError(f"{getattr(fn, '__name__', fn)}: option '{f.name}' of group '{name}' "
                                 "repeats another option")
            out[f.name] = (hints.get(f.name, f.type), getattr(default, f.name))
    return out


def bind_options(fn: Callable[..., Any], flat: Mapping[str, Any], positional: int = 3) -> dict[str, Any]:
    """Keyword arguments for calling ``fn`` with the flat options ``flat``: fields of a
    dataclass group are collected into an instance of it (the default with them replaced);
    other keys pass through unchanged."""
    out = dict(flat)
    for name, (tp, default) in _groups(fn, positional).items():
        if _is_group(tp, default):
            names = {f.name for f in dataclasses.fields(tp)}
            mine = {k: out.pop(k) for k in list(out) if k in names}
            if mine or name not in out:
                out[name] = dataclasses.replace(out.get(name, default), **mine)
    return out


def type_name(tp: Any) -> str:
    """A short readable name of an option type (``float``, ``'a' | 'b'``, ``int | None``)."""
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(c) for c in typing.get_args(tp))
    if _is_optional(tp):
        return f"{type_name(_non_none(tp))} | None"
    return getattr(tp, "__name__", str(tp))


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _non_none(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007


def convert(value: str, tp: Any) -> Any:
    """``value`` converted to ``tp``; ValueError with a short reason when it does not fit."""
    if _is_optional(tp):
        if value.strip().lower() in ("none", "null"):
            return None
        return convert(value, _non_none(tp))
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if value == str(c) or (isinstance(c, bool) and value.lower() == str(c).lower()):
                return c
        raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}")
    if tp is bool:
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise ValueError("expected true/false (or 1/0, yes/no)")
    if tp is int:
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
    if tp is float:
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError("expected a number") from None
    if tp is str or tp is Any:
        return value
    raise ValueError(f"options of type {type_name(tp)} cannot be set from the command line")


def parse_options(fn: Callable[..., Any], raw: Mapping[str, str], name: str = "", *,
                  kind: str = "method", positional: int = 3) -> dict[str, Any]:
    """``raw`` (``--set key=value`` strings) converted by ``fn``'s option annotations.

    BenchError for a key ``fn`` does not take (listing the accepted keys and close matches)
    or a value that does not convert. Only the given keys are returned. ``kind`` and
    ``positional`` serve other option holders: a backend is checked with
    ``parse_options(cls.__init__, options, name, kind="backend", positional=2)``.
    """
    opts = method_options(fn, positional)
    label = f"{kind} '{name}'" if name else f"{kind} {getattr(fn, '__name__', fn)!r}"
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in opts:
            close = difflib.get_close_matches(key, list(opts), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            accepted = ", ".join(opts) or "none"
            raise BenchError(f"{label} has no option '{key}'; {hint}(accepted: {accepted})")
        tp = opts[key][0]
        if not isinstance(value, str):
            out[key] = value
            continue
        try:
            out[key] = convert(value, tp)
        except ValueError as e:
            raise BenchError(f"{label}: option {key}={value!r}: {e}") from None
    return out


def effective_options(fn: Callable[..., Any], given: Mapping[str, Any], name: str = "") -> dict[str, Any]:
    """Every option of ``fn`` with the value a call with ``given`` uses (defaults filled in);
    BenchError when a required option is missing. This is what a run records."""
    opts = method_options(fn)
    out: dict[str, Any] = {}
    for key, (_, default) in opts.items():
        if key in given:
            out[key] = given[key]
        elif default is REQUIRED:
            raise BenchError(f"method '{name or fn.__name__}' needs option '{key}' (--set {key}=...)")
        else:
            out[key] = default
    return out


def split_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """``["lr=1e-5", "alpha=2"]`` -> ``{"lr": "1e-5", "alpha": "2"}``; BenchError on an item
    without ``=`` or with an empty key. A later key overrides an earlier one."""
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--set expects key=value, got {p!r}")
        out[key.strip()] = value
    return out
