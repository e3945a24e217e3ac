"""Generation backends: vLLM offline, transformers, OpenAI-compatible servers.

Each is imported only when chosen, so `backend: transformers` never imports vLLM.
"""

from __future__ import annotations

from typing import Any

from prefsmith.generation.backends.base import Backend, Completion
from prefsmith.schemas.data_configs import GenerateConfig

__all__ = ["Backend", "Completion", "load_backend"]


def load_backend(config: GenerateConfig, *, tokenizer: Any) -> Backend:
    """Construct the backend `config.backend` names (loads the model or connects to servers)."""
    if config.backend == "vllm":
        from prefsmith.generation.backends.vllm_offline import VllmBackend

        return VllmBackend(config, tokenizer=tokenizer)
    if config.backend == "transformers":
        from prefsmith.generation.backends.hf import TransformersBackend

        return TransformersBackend(config, tokenizer=tokenizer)
    from prefsmith.generation.backends.openai_server import OpenAIServerBackend

    return OpenAIServerBackend(config, tokenizer=tokenizer)
