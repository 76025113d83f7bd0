"""Scoring texts longer than the model's context, and texts with no prompt.

A ``LogLikelihood`` / ``TokenStats`` request whose prompt + continuation do not fit the
model's context (``max_length`` tokens), or whose prompt is empty (the ``document``
format of a model without BOS), is split into windows as lm-evaluation-harness's rolling
log-likelihood does (``get_rolling_token_windows`` with ``context_len=1`` and
``make_disjoint_window``):

* an empty prompt becomes one *prefix token* (the model's BOS id, else its EOS id — the
  harness's ``prefix_token_id``), so that the first continuation token is scored;
* the first window is the prompt (its last ``max_length - 1`` tokens at most) followed by as
  many continuation tokens as fit; every later window scores the next ``max_length``
  continuation tokens given only the one token before them (disjoint windows).

The windows' per-token scores concatenated in order are the response: every continuation
token is scored exactly once, each given at most ``max_length - 1`` tokens of context.
"""

from __future__ import annotations

from collections.abc import Sequence

Pair = tuple[tuple[int, ...], tuple[int, ...]]


def prefix_token(tokenizer, model=None) -> int:
    """The token put before a text with no prompt: BOS if the model has one, else EOS."""
    for tid in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if tid is not None:
            return int(tid)
    cfg = getattr(model, "config", None)
    for tid in (getattr(cfg, "bos_token_id", None), getattr(cfg, "eos_token_id", None)):
        if isinstance(tid, int):
            return tid
    return 0


def windows(prompt: Sequence[int], cont: Sequence[int], max_length: int, prefix: int) -> list[Pair]:
    """``(prompt_ids, continuation_ids)`` windows that together score ``cont`` once each
    (see the module docstring). One window when everything fits and the prompt is not empty."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    p = tuple(prompt) or (prefix,)
    c = tuple(cont)
    if len(p) + len(c) <= max_length:
        return [(p, c)]
    p = p[-(max_length - 1):]
    first = max_length - len(p)
    out: list[Pair] = [(p, c[:first])]
    done = first
    while done < len(c):
        n = min(max_length, len(c) - done)
        out.append(((c[done - 1],), c[done:done + n]))
        done += n
    return out
