"""Checks that turn bad input into one-line errors, before (or right around) expensive work.

Everything here raises :class:`~bench.errors.BenchError` with one line naming the culprit
(option, file, set, parameter, adapter). The checks that need no model run before any model
is built or prepared (:func:`check_backend_available`, :func:`check_out_dir`,
:func:`check_task_data`, :func:`check_limit`); :func:`call_method` wraps the one call into
user code, a method adapter.

The method contract (:func:`call_method`)
-----------------------------------------
``unlearn(model, forget, retain, **options)`` gets the :class:`~bench.model_bundle.ModelBundle`
and returns the unlearned bundle: the same object (changed in place) or a new one. Returning
``None`` is accepted for a method that changed the given bundle's weights in place (some
parameter was written, as an optimizer step does); a ``None`` from a method that wrote no
weight is an error (a forgotten ``return`` of a new model would otherwise evaluate the
input model). Any other return value (a string, a bare torch module, a tuple) is an error.
The returned weights must be finite: a NaN or inf is an error naming the first bad
parameter. An exception raised by the adapter is reported as one line with its type,
message, and the file and line in the adapter where it happened; the full traceback is
appended to the run's log file (``<run>/run.log``).
"""

from __future__ import annotations

import importlib.util
import inspect
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError

# the Python modules a backend needs beyond the suite's own dependencies; a backend class
# may also declare them itself as ``requires = ("module", ...)``
BACKEND_REQUIRES: dict[str, tuple[str, ...]] = {"vllm": ("vllm",)}


def check_backend_available(name: str, cls: Any = None) -> None:
    """BenchError unless the modules backend ``name`` needs can be imported (found by
    ``importlib.util.find_spec``, nothing is imported: this is cheap and runs before any
    model is prepared)."""
    needs = tuple(BACKEND_REQUIRES.get(name, ())) + tuple(getattr(cls, "requires", ()) or ())
    for module in dict.fromkeys(needs):
        if importlib.util.find_spec(module) is None:
            if name == "vllm":
                from bench.backends.vllm import NOT_INSTALLED

                raise BenchError(NOT_INSTALLED + "; or use --backend hf")
            raise BenchError(f"backend '{name}' needs the Python package '{module}', which is not "
                             "installed; or use --backend hf")


def check_limit(value: Any, option: str = "--limit") -> int | None:
    """``value`` if it is ``None`` or a positive integer, else a BenchError naming ``option``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BenchError(f"{option} must be a positive integer, got {value!r}")
    return value


MAX_SEED = 2**32 - 1  # numpy's seed range


def check_seed(value: Any) -> int:
    """``value`` if it is an integer in ``[0, 2**32 - 1]`` (what numpy, torch and random all
    accept), else a BenchError naming ``--seed``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise BenchError(f"--seed must be an integer from 0 to {MAX_SEED}, got {value!r}")
    return value


def check_out_dir(out: str | Path, option: str = "--out") -> Path:
    """``out`` as a Path if it is a directory or can be made one: BenchError when it (or a
    folder above it) is an existing file."""
    p = Path(out).expanduser()
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                what = "is a file" if q == p else f"is inside '{q}', which is a file"
                raise BenchError(f"{option} '{out}' {what}; give a directory for the run directories")
            break
    return p


def check_task_data(data: Any) -> None:
    """BenchError for an eval set without items (naming the set and its source file) or a
    step whose forget split has no items; every step of a multi-step task is checked."""
    steps = data.all_steps() if hasattr(data, "all_steps") else [data]
    for step in steps:
        label = f"step '{step.name}': " if len(steps) > 1 else ""
        for es in step.eval_sets:
            if not es.items:
                src = f" ({es.source})" if es.source else ""
                raise BenchError(f"{label}eval set '{es.name}'{src} has no items (an empty file or an empty array)")
        if not list(step.forget or ()):
            raise BenchError(f"{label}the task's forget split has no items")


def cap_split(items: Sequence[Any], limit: int | None) -> Sequence[Any]:
    """The first ``limit`` items of a training split, keeping its type and ``format``
    (:class:`bench.items.Split`); ``items`` itself when ``limit`` is None."""
    if limit is None or len(items) <= limit:
        return items
    from bench.items import Split

    if isinstance(items, Split):
        return Split(items[:limit], format=items.format)
    return list(items)[:limit]


# --------------------------------------------------------------------------- methods


def _source_file(fn: Callable[..., Any]) -> str | None:
    try:
        f = inspect.getsourcefile(inspect.unwrap(fn))
    except (TypeError, ValueError):
        return None
    return str(Path(f).resolve()) if f else None


def _where(exc: BaseException, adapter_file: str | None) -> str:
    """``file:line (in function)`` of the deepest traceback frame in the adapter's file, else
    of the deepest frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    chosen = frames[-1]
    if adapter_file is not None:
        mine = [f for f in frames if str(Path(f.filename).resolve()) == adapter_file]
        if mine:
            chosen = mine[-1]
    return f"{chosen.filename}:{chosen.lineno} (in {chosen.name})"


def _append_log(log_path: Path | None, text: str) -> None:
    if log_path is None:
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def _param_versions(module: Any) -> dict[str, int] | None:
    """Every parameter's in-place write counter (``Tensor._version``: optimizer steps,
    ``copy_``, ``add_`` ... increment it); None where torch does not track it (inference
    tensors), and then an in-place change cannot be told from none."""
    try:
        return {n: int(p._version) for n, p in module.named_parameters()}
    except (RuntimeError, AttributeError):
        return None


def check_finite(module: Any, who: str) -> None:
    """BenchError naming the first floating parameter or buffer with a NaN or inf."""
    import torch

    with torch.no_grad():
        for kind, named in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
            for n, t in named:
                if not torch.is_floating_point(t):
                    continue
                finite = torch.isfinite(t)
                if not bool(finite.all()):
                    bad = int((~finite).sum())
                    kinds = ", ".join(k for k, hit in (("NaN", torch.isnan(t).any()),
                                                       ("inf", torch.isinf(t).any())) if bool(hit))
                    raise BenchError(f"{who} left non-finite weights: {kind} '{n}' has {bad} of {t.numel()} "
                                     f"values {kinds} (diverged? try a lower lr)")


def call_method(fn: Callable[..., Any], bundle: Any, forget: Sequence[Any], retain: Sequence[Any],
                kwargs: Mapping[str, Any], name: str, log_path: Path | None = None) -> Any:
    """``fn(bundle, forget, retain, **kwargs)`` under the method contract (module docstring):
    returns the unlearned bundle, or raises a one-line BenchError (the traceback of an
    adapter's exception appended to ``log_path``)."""
    from bench.model_bundle import ModelBundle

    who = f"method '{name}'"
    before = _param_versions(bundle.module)
    try:
        out = fn(bundle, forget, retain, **kwargs)
    except BenchError as e:  # the suite's own one-line errors (e.g. from the training loop)
        _append_log(log_path, f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {who} failed:\n{traceback.format_exc()}")
        raise BenchError(f"{who}: {e}") from e
    except Exception as e:
        _append_log(log_path, f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {who} raised:\n{traceback.format_exc()}")
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        log_hint = f"; full traceback in {log_path}" if log_path is not None else ""
        raise BenchError(f"{who} raised {type(e).__name__}: {msg} at {_where(e, _source_file(fn))}"
                         f"{log_hint}") from e
    if out is None:
        if before is not None and _param_versions(bundle.module) == before:
            raise BenchError(f"{who} returned None and wrote no weight of the model it was given: "
                             "return the unlearned ModelBundle (None is accepted only after an in-place change)")
        out = bundle
    elif not isinstance(out, ModelBundle):
        hint = ""
        try:
            import torch

            if isinstance(out, torch.nn.Module):
                hint = " (a bare torch module: set model.module = ... and return model)"
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        raise BenchError(f"{who} returned {type(out).__name__}; it must return the ModelBundle it was "
                         f"given (or a new one){hint}")
    check_finite(out.module, who)
    return out
