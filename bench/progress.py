"""Progress of long steps: a bar on a terminal, plain lines otherwise.

Every step that can take more than a few seconds (training, evaluation, preparing a
model) reports through :class:`Progress`:

* on a terminal (``stream.isatty()``) it draws a tqdm bar with the step's counts;
* otherwise it prints one line ``<desc>: <done>/<total> <unit> (<pct>%) <fields> ETA <t>``
  at most every ``every_s`` seconds (default 10; ``$BENCH_PROGRESS_EVERY`` overrides),
  plus a final ``<desc>: done <total> <unit> in <t>`` line when the step took at least
  ``min_s`` seconds (default 2) — a short step stays silent;
* ``$BENCH_PROGRESS=0`` silences both, ``=lines`` forces lines, ``=bar`` forces bars.

ETA = elapsed · (total − done) / done, from the work done so far (units: the caller's,
e.g. optimizer steps or requests). :func:`expected_line` is the one-line warning printed
before a step that will take long (see :func:`bench.training.train`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

EVERY_S = 10.0
MIN_S = 2.0


def fmt_seconds(s: float) -> str:
    """``42s``, ``3m05s``, ``2h03m`` (rounded down)."""
    s = max(0, int(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _mode(stream: TextIO) -> str:
    env = os.environ.get("BENCH_PROGRESS", "").strip().lower()
    if env in ("0", "off", "none", "false"):
        return "off"
    if env in ("lines", "bar"):
        return env
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):
        return "lines"


class Progress:
    """Counts ``total`` units of one step; see the module docstring.

    ``update(n, **fields)`` adds ``n`` done units and sets the shown fields (e.g.
    ``loss=0.41``, ``epoch="2/10"``); ``close()`` ends the step (also as a context manager).
    """

    def __init__(self, desc: str, total: int, unit: str = "steps", *, stream: TextIO | None = None,
                 every_s: float | None = None, min_s: float = MIN_S, enabled: bool | None = None,
                 clock: Any = time.monotonic):
        self.desc, self.total, self.unit = desc, max(0, int(total)), unit
        self.stream = stream if stream is not None else sys.stdout
        self.mode = _mode(self.stream)
        if enabled is False:
            self.mode = "off"
        elif enabled is True and self.mode == "off":
            self.mode = "lines"
        env_every = os.environ.get("BENCH_PROGRESS_EVERY")
        self.every_s = float(every_s if every_s is not None else (env_every or EVERY_S))
        self.min_s = min_s
        self.clock = clock
        self.done = 0
        self._t_first: float | None = None  # the clock when the first update came, and its count
        self._n_first = 0
        self.fields: dict[str, Any] = {}
        self.t0 = clock()
        self._last = self.t0
        self._closed = False
        self._bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=f" {unit}", file=self.stream,
                             dynamic_ncols=True, leave=True)

    # ------------------------------------------------------------------ public

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def eta(self) -> float | None:
        """Seconds left at the pace so far (None before any unit is done)."""
        if self.done <= 0:
            return None
        return self.elapsed() * max(0, self.total - self.done) / self.done

    def eta_after_first(self) -> float | None:
        """Seconds left at the pace of the units after the first (None before two are done):
        the first unit carries one-off costs (a training loop's first batch: allocations, the
        answer-logits check, bench.answer_logits) that the others do not repeat. On the tiny
        model's two TOFU prepares the pace of the first three steps predicted 1.6x and 2.1x the
        time (2m51s and 3m54s for 1m47s and 1m49s)."""
        if self.done < 2 or self._t_first is None:
            return None
        pace = (self.clock() - self._t_first) / (self.done - self._n_first)
        return pace * max(0, self.total - self.done)

    def update(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        if self._t_first is None:
            self._t_first, self._n_first = self.clock(), self.done
        self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(n)
            if fields:
                self._bar.set_postfix({k: _fmt(v) for k, v in self.fields.items()}, refresh=False)
        elif self.mode == "lines":
            now = self.clock()
            if now - self._last >= self.every_s and self.done < self.total:
                self._last = now
                self._print(self.line())

    def line(self) -> str:
        """The progress line for the current state."""
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        extra = "".join(f" {k} {_fmt(v)}" for k, v in self.fields.items())
        eta = self.eta()
        tail = f" ETA {fmt_seconds(eta)}" if eta is not None else ""
        return f"{self.desc}: {self.done}/{self.total} {self.unit}{pct}{extra}{tail}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines" and self.elapsed() >= self.min_s:
            extra = "".join(f" {k} {_fmt(v)}" for k, v in self.fields.items())
            self._print(f"{self.desc}: done {self.done} {self.unit}{extra} in {fmt_seconds(self.elapsed())}")

    def note(self, text: str) -> None:
        """Print one line now (above the bar on a terminal), unless progress is off."""
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self._print(text)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def expected_line(desc: str, seconds: float, skip: str) -> str:
    """The warning before a long step: ``<desc>: expected to take about <t> on this
    hardware (measured on the first steps); to skip it: <skip>``."""
    return (f"{desc}: expected to take about {fmt_seconds(seconds)} on this hardware "
            f"(from the speed of the first steps); to skip it: {skip}")
