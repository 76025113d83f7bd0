"""Requests a task asks of a model, and the responses a backend gives.

Requests are frozen and hashable: identical requests are answered once, and a request
(with the model fingerprint and decoding settings) is the key of the request cache.
Prompts are already formatted strings (see :mod:`bench.prompts`); backends tokenize them
with ``add_special_tokens=False``, so a BOS token, where the model wants one, is part of
the prompt text.

Conventions
-----------
* Log-probabilities are natural logs (nats).
* ``LogLikelihood(prompt, continuation)``: the continuation is scored token by token given
  the prompt (prompt tokens are masked). Tokenization: ``prompt + continuation`` is
  tokenized as one string and the continuation's tokens are those after the prompt's; if
  the prompt's tokens are not a prefix of the joint tokenization (a merge across the
  boundary), the two are tokenized separately and concatenated. The response carries the
  per-token log-probs and, per token, whether it is the model's argmax prediction, so one
  forward pass serves probability, truth ratio, extraction strength, exact memorization
  and the loss-based MIA scores.
* ``TokenStats`` adds full-distribution statistics per continuation token (for min-k%++
  and entropy): ``mu_t = Σ_v p_v log p_v`` and ``var_t = Σ_v p_v (log p_v)² − mu_t²``.
* ``Generate``: greedy decoding of at most ``max_new_tokens`` tokens, stopped at EOS or at
  the first occurrence of any ``stop`` string (the text is cut before it). The text is
  decoded without special tokens and stripped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class LogLikelihood:
    """Score ``continuation`` given ``prompt`` (teacher forcing)."""

    prompt: str
    continuation: str
    kind: str = field(default="loglikelihood", init=False, repr=False)


@dataclass(frozen=True)
class TokenStats:
    """Like :class:`LogLikelihood`, plus full-distribution statistics per token."""

    prompt: str
    continuation: str
    kind: str = field(default="token_stats", init=False, repr=False)


@dataclass(frozen=True)
class Generate:
    """Greedy generation of at most ``max_new_tokens`` tokens after ``prompt``."""

    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    kind: str = field(default="generate", init=False, repr=False)


Request = Union[LogLikelihood, TokenStats, Generate]  # noqa: UP007 (runtime alias, py3.10)


@dataclass(frozen=True)
class LogLikelihoodResponse:
    """Per continuation token: log-prob of the true token and whether it was the argmax."""

    token_logprobs: tuple[float, ...]
    is_greedy: tuple[bool, ...]

    @property
    def num_tokens(self) -> int:
        return len(self.token_logprobs)

    @property
    def sum_logprob(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def mean_nll(self) -> float:
        """``L̄`` = mean negative log-likelihood per token (nats); ``inf`` with no tokens."""
        n = len(self.token_logprobs)
        return float("inf") if n == 0 else -sum(self.token_logprobs) / n


@dataclass(frozen=True)
class TokenStatsResponse(LogLikelihoodResponse):
    """:class:`LogLikelihoodResponse` plus per-token ``mu`` / ``var`` / ``entropy`` (nats)."""

    mu: tuple[float, ...] = ()
    var: tuple[float, ...] = ()
    entropy: tuple[float, ...] = ()


@dataclass(frozen=True)
class GenerateResponse:
    """A greedy generation: stripped text and the number of tokens generated."""

    text: str
    num_tokens: int
    finish_reason: str = "eos"  # "eos" | "stop" | "length"


Response = Union[LogLikelihoodResponse, TokenStatsResponse, GenerateResponse]  # noqa: UP007


def to_json(resp: Response) -> dict:
    """A JSON-able dict for the request cache (inverse: :func:`from_json`)."""
    if isinstance(resp, GenerateResponse):
        return {"t": "gen", "text": resp.text, "n": resp.num_tokens, "f": resp.finish_reason}
    d = {"t": "ll", "lp": list(resp.token_logprobs), "g": [int(b) for b in resp.is_greedy]}
    if isinstance(resp, TokenStatsResponse):
        d.update(t="ts", mu=list(resp.mu), var=list(resp.var), ent=list(resp.entropy))
    return d


def from_json(d: dict) -> Response:
    if d["t"] == "gen":
        return GenerateResponse(d["text"], d["n"], d["f"])
    lp, g = tuple(d["lp"]), tuple(bool(x) for x in d["g"])
    if d["t"] == "ts":
        return TokenStatsResponse(lp, g, tuple(d["mu"]), tuple(d["var"]), tuple(d["ent"]))
    return LogLikelihoodResponse(lp, g)
