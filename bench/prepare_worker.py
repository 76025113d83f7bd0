"""Fine-tune one prepared model in a separate process: ``python -m bench.prepare_worker``.

``bench.run.prepare`` starts this to train the target on a second CPU core while it trains
and evaluates the retain-only model itself (see :func:`bench.run.parallel_prepare_ok`).
The worker first imports what training needs (torch, transformers' auto model classes —
``import transformers`` alone defers them — and the suite: 5 to 9 s on a small CPU), then
reads one line from stdin: the path of a job, a pickle of ``(target_dir, args)`` for
:func:`bench.run._build_cached`. It writes the model atomically to ``target_dir`` and, on
failure, the one-line reason to ``JOB + ".error"`` (exit status 1). An empty line or the
end of stdin (the parent closed it, or died) ends it with status 0. Progress goes to the
inherited stdout as lines.

:class:`Worker` is the parent's side: ``prepare`` starts one before it builds the base
model, so that the imports overlap that build instead of delaying the second model.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _run_job(job: Path) -> int:
    if os.environ.get("BENCH_PROGRESS", "").lower() not in ("0", "off", "none", "false"):
        os.environ["BENCH_PROGRESS"] = "lines"  # two bars on one terminal would garble each other
    target, args = pickle.loads(job.read_bytes())
    try:
        from bench.run import _build_cached

        _build_cached(Path(target), *args)
    except BaseException as e:  # noqa: BLE001 - the parent re-raises it as one line
        Path(str(job) + ".error").write_text(f"{type(e).__name__}: {e}")
        return 1
    return 0


def warm_up() -> None:
    """Import what a job's first steps need (loading a model, training it), so that it is
    done before the job comes."""
    import torch  # noqa: F401
    import transformers.modeling_utils  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (lazy names: this is the heavy import)

    import bench.models  # noqa: F401
    import bench.run  # noqa: F401
    import bench.training  # noqa: F401


def main() -> int:
    warm_up()
    line = sys.stdin.readline().strip()
    return _run_job(Path(line)) if line else 0


class Worker:
    """A worker process started ahead of its job (see the module docstring). Either
    :meth:`build` gives it the job, or :meth:`close` lets it go."""

    def __init__(self) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "bench.prepare_worker"],
                                     stdin=subprocess.PIPE, text=True)
        self.used = False

    def build(self, target: Path, args: tuple[Any, ...]) -> Callable[..., None]:
        """Have the worker build ``target`` (:func:`bench.run._build_cached` with ``args``);
        returns ``wait(stop=False)``: waits for it (``stop``: terminates it first) and raises
        BenchError with the worker's reason if it failed."""
        import tempfile

        from bench.errors import BenchError

        fd, job = tempfile.mkstemp(prefix="bench-prepare-", suffix=".pkl")
        with open(fd, "wb") as f:
            pickle.dump((str(target), args), f)
        self.used = True
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(job + "\n")
            self.proc.stdin.close()
        except BrokenPipeError:  # it died before reading: wait() reports its status
            pass

        def wait(stop: bool = False) -> None:
            if stop:
                self.proc.terminate()
            rc = self.proc.wait()
            err = Path(job + ".error")
            reason = err.read_text() if err.exists() else f"exit status {rc}"
            for p in (Path(job), err):
                p.unlink(missing_ok=True)
            if rc != 0 and not stop:
                raise BenchError(f"prepare: the worker building {target.name} failed: {reason}")

        return wait

    def close(self) -> None:
        """Stop an unused worker; a used one is left to the ``wait`` that :meth:`build` returned."""
        if not self.used:
            self.proc.terminate()  # it holds no work: at most its imports
            self.proc.wait()


if __name__ == "__main__":
    from bench.cli import exit_fast

    exit_fast(main())  # the parent waits for this exit: no 1.5 s interpreter teardown
