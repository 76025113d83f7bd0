"""Model backends. Importing this package registers the built-in backends in
``bench.registry.BACKENDS``; each module imports torch/transformers only when used."""

from bench.backends import hf  # noqa: F401  (registers "hf")

try:  # optional engine: the module imports vllm only when a VLLMBackend is built
    from bench.backends import vllm  # noqa: F401  (registers "vllm")
except ImportError:  # pragma: no cover
    pass
