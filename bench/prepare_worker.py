"""Fine-tune (and evaluate) a prepared model in a separate process (``python -m bench.prepare_worker``;
:class:`Worker` starts it with this process's ``bench`` package first on its path).

``bench.run.prepare`` starts this to train the target on a second CPU core while it trains
and evaluates the retain-only model itself (see :func:`bench.run.parallel_prepare_ok`);
``bench.run.run`` may then leave the target's reference evaluation to it while it unlearns.
The worker first imports what training needs (torch, transformers' auto model classes —
``import transformers`` alone defers them — and the suite: 5 to 9 s on a small CPU), then
reads jobs from stdin, one line each: the path of a pickle ``(kind, args)``, done in turn:

* ``"build"``, ``(target_dir, build_args)``: :func:`bench.run._build_cached` writes the
  model atomically to ``target_dir``;
* ``"reference"``, ``(spec, task, data, model, reference)``: :func:`bench.run.reference_run`
  evaluates ``model`` (an ordinary cached ``method none`` run).

After each job it writes one line to the status pipe (the file descriptor in
``$BENCH_WORKER_FD``): ``ok`` and the job's result (the run directory of a reference run),
or ``error`` and the one-line reason. An empty line or the end of stdin (the parent closed
it, or died) ends it with status 0. Progress goes to the inherited stdout as lines.

:class:`Worker` is the parent's side: ``prepare`` starts one before it builds the base
model, so that the imports overlap that build instead of delaying the second model.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any, TextIO

FD_ENV = "BENCH_WORKER_FD"


def _run_job(job: Path) -> str:
    """Do the job pickled at ``job``; its result as a string."""
    kind, args = pickle.loads(job.read_bytes())
    from bench import run

    if kind == "build":
        target, build_args = args
        run._build_cached(Path(target), *build_args)
        return ""
    if kind == "reference":
        spec, task, data, model, reference = args
        return str(run.reference_run(spec, model, task, data, print, reference=reference))
    raise ValueError(f"unknown job kind {kind!r}")


def warm_up() -> None:
    """Import what a job's first steps need (loading a model, training it), so that it is
    done before the job comes."""
    import torch  # noqa: F401
    import transformers.modeling_utils  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (lazy names: this is the heavy import)

    import bench.models  # noqa: F401
    import bench.run  # noqa: F401
    import bench.training  # noqa: F401


def serve(jobs: TextIO, status: TextIO) -> int:
    """Do the jobs named on ``jobs`` in turn, a status line each on ``status``; 0 at the end."""
    if os.environ.get("BENCH_PROGRESS", "").lower() not in ("0", "off", "none", "false"):
        os.environ["BENCH_PROGRESS"] = "lines"  # two bars on one terminal would garble each other
    for line in jobs:
        job = line.strip()
        if not job:
            break
        try:
            result = "ok " + _run_job(Path(job))
        except BaseException as e:  # noqa: BLE001 - the parent re-raises it as one line
            result = "error " + f"{type(e).__name__}: {e}".replace("\n", " ")
        status.write(result.rstrip() + "\n")
        status.flush()
        if result.startswith("error"):
            return 1
    return 0


def main() -> int:
    warm_up()
    fd = os.environ.get(FD_ENV)
    status = os.fdopen(int(fd), "w") if fd else sys.stderr
    return serve(sys.stdin, status)


class Worker:
    """A worker process started ahead of its jobs (see the module docstring): :meth:`submit`
    gives it one, :meth:`result` waits for the next one's outcome, :meth:`close` lets it go."""

    def __init__(self) -> None:
        import subprocess

        r, w = os.pipe()
        env = {**os.environ, FD_ENV: str(w)}
        # this process's bench package first (``python -m`` would put the working directory first)
        root = str(Path(__file__).resolve().parents[1])
        code = f"import sys; sys.path.insert(0, {root!r}); from bench.prepare_worker import _entry; _entry()"
        self.proc = subprocess.Popen([sys.executable, "-c", code],
                                     stdin=subprocess.PIPE, text=True, pass_fds=(w,), env=env)
        os.close(w)
        self.status = os.fdopen(r)
        self.used = False
        self.pending: list[tuple[str, Path]] = []  # (what, job file) submitted, result not yet read

    def submit(self, what: str, kind: str, args: tuple[Any, ...]) -> None:
        """Queue a job (``kind``, ``args``: see the module docstring); ``what`` names it in errors."""
        import tempfile

        fd, job = tempfile.mkstemp(prefix="bench-worker-", suffix=".pkl")
        with open(fd, "wb") as f:
            pickle.dump((kind, args), f)
        self.used = True
        self.pending.append((what, Path(job)))
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(job + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # it died: result() reports it
            pass

    def result(self) -> str:
        """The result of the oldest job not yet read, waiting for it; BenchError with the
        worker's reason when it failed (or died)."""
        from bench.errors import BenchError

        what, job = self.pending.pop(0)
        line = self.status.readline()
        job.unlink(missing_ok=True)
        if line.startswith("ok"):
            return line[2:].strip()
        reason = line[6:].strip() if line.startswith("error") else f"exit status {self.proc.wait()}"
        self.close()
        raise BenchError(f"prepare: the worker {what} failed: {reason}")

    def close(self, stop: bool = False) -> None:
        """End the worker: let it finish its jobs and exit (``stop``, or an unused worker:
        terminate it, its work is not wanted)."""
        if self.proc.returncode is None:
            if stop or not self.used:
                self.proc.terminate()
            else:
                try:
                    assert self.proc.stdin is not None
                    self.proc.stdin.close()  # the end of its jobs
                except (BrokenPipeError, OSError):
                    pass
            self.proc.wait()
        for _, job in self.pending:
            job.unlink(missing_ok=True)
        self.pending.clear()
        self.status.close()


def _entry() -> None:
    from bench.cli import exit_fast

    exit_fast(main())  # the parent waits for this exit: no 1.5 s interpreter teardown


if __name__ == "__main__":
    _entry()
