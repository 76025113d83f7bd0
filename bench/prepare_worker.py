"""Fine-tune one prepared model in a separate process: ``python -m bench.prepare_worker JOB``.

``bench.run.prepare`` starts this to train the retain-only model on a second CPU core while
it trains the target itself (see :func:`bench.run.parallel_prepare_ok`). ``JOB`` is a pickle
of ``(target_dir, args)`` for :func:`bench.run._build_cached`; the worker writes the model
atomically to ``target_dir`` and, on failure, the one-line reason to ``JOB + ".error"``
(exit status 1). Progress goes to the inherited stdout as lines.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    job = Path(argv[0])
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
