"""unlearning-bench: an evaluation-first benchmark suite for LLM unlearning.

The engine lives here; task definitions install as ``bench.tasks`` (folder ``tasks/``)
and method adapters as ``bench.methods`` (folder ``methods/``). Heavy dependencies
(torch, transformers, scipy, matplotlib) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"
