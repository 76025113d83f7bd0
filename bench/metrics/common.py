"""Helpers shared by the TOFU item metrics: the one likelihood request per answer text,
response checks, and option validation.

Every likelihood-based metric asks for ``LogLikelihood(ctx.prompt_for(item),
ctx.continuation(text))`` built by :func:`answer_request`, so probability, truth ratio,
extraction strength and exact memorization on the same (prompt, answer) issue the *same*
request and the engine answers it once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError
from bench.items import Item
from bench.metrics.base import EvalContext
from bench.requests import LogLikelihood, LogLikelihoodResponse, Response

#: open-unlearning's guard against division by zero (``+ 1e-10`` in the denominators of
#: ``probability_w_options``, ``truth_ratio`` and its aggregators). Kept so that values
#: match the reference even where probabilities are tiny (unlearned models).
EPS = 1e-10


def answer_request(item: Item, ctx: EvalContext, text: str) -> LogLikelihood:
    """The likelihood request for ``text`` as the answer to ``item``'s question.

    The continuation is ``ctx.continuation(text)``: the answer followed by the
    end-of-turn/EOS marker, which is therefore one of the scored tokens.
    """
    return LogLikelihood(ctx.prompt_for(item), ctx.continuation(text))


def normalised_prob(resp: LogLikelihoodResponse) -> float | None:
    """``P̃ = exp(-L̄)``: the per-token geometric-mean probability; ``None`` with no tokens."""
    if resp.num_tokens == 0:
        return None
    return math.exp(-resp.mean_nll)


def check_responses(metric: str, responses: Sequence[Response], n: int, kind: type) -> None:
    """Raise a BenchError unless ``responses`` are ``n`` instances of ``kind`` (engine bug guard)."""
    if len(responses) != n:
        raise BenchError(f"metric '{metric}': expected {n} response(s), got {len(responses)}")
    for r in responses:
        if not isinstance(r, kind):
            raise BenchError(
                f"metric '{metric}': expected {kind.__name__}, got {type(r).__name__}"
            )


def check_choice(metric: str, option: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; a BenchError naming the option otherwise."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise BenchError(f"metric '{metric}': option {option} must be one of {allowed} (got {value!r})")
    return value


def check_bool(metric: str, option: str, value: Any) -> bool:
    """Return ``value`` if it is a bool; a BenchError naming the option otherwise."""
    if not isinstance(value, bool):
        raise BenchError(f"metric '{metric}': option {option} must be true or false (got {value!r})")
    return value


def require_field(metric: str, item: Item, field: str) -> Any:
    """The item's ``field``; a BenchError naming item and field when it is empty/missing."""
    value = getattr(item, field)
    if value is None or (isinstance(value, (str, tuple)) and len(value) == 0):
        raise BenchError(f"item '{item.id}': field '{field}' is empty; metric '{metric}' needs it")
    return value


__all__ = [
    "EPS",
    "answer_request",
    "check_bool",
    "check_choice",
    "check_responses",
    "normalised_prob",
    "require_field",
]
