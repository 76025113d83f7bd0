"""The backend contract: answer a list of requests, in request order.

A backend knows nothing of metrics or tasks. It batches, sorts, shares prefixes and
dedupes as it likes, and returns one response per request in the order given. The
engine wraps every backend in the same dedupe + cache layer (see
:mod:`bench.backends.cache`), so identical requests reach a backend once.

``settings()`` returns everything besides the model and the request that can change an
answer (dtype, engine name and version, decoding options); it is part of the cache key
and of results.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from bench.requests import Request, Response


class Backend:
    name: ClassVar[str] = ""

    def answer(self, requests: Sequence[Request]) -> list[Response]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name}

    def engines(self) -> dict[str, str]:
        """Which engine answers which request kind, e.g. ``{"generate": "vllm", ...}``."""
        return {"loglikelihood": self.name, "token_stats": self.name, "generate": self.name}

    def close(self) -> None:
        """Release engines/memory. Safe to call twice."""

