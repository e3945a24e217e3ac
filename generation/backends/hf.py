"""transformers backend: batched, left-padded `model.generate` with per-sample seeded sampling.

Reproducibility without a global RNG: `model.generate` runs in greedy mode and a logits
processor does the sampling itself (temperature, top-p, then the Gumbel-max trick) with one
`torch.Generator` per sample, seeded from the prompt's seed and the sample index. A sample's
random draws therefore do not depend on its batch mates, the batch size or the order of prompts.
Batches are formed after sorting prompts by length, so little compute goes to padding.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from typing import Any

from prefsmith.generation.backends.base import Completion, completion_text, per_prompt_max_tokens
from prefsmith.generation.turn_end import end_of_turn_ids
from prefsmith.schemas.data_configs import GenerateConfig, SamplingConfig
from prefsmith.schemas.ids import content_hash

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def sample_seed(prompt_seed: int, sample_idx: int) -> int:
    """Seed of one sample's generator: stable in (prompt seed, sample index)."""
    return int(content_hash([prompt_seed, sample_idx]), 16) % (2**63 - 1)


class SeededSampler:
    """A logits processor that samples each row with its own generator and forces that token.

    Returned scores are 0 at the sampled token and -inf elsewhere, so greedy `generate` picks it.
    """

    def __init__(self, seeds: Sequence[int], *, temperature: float, top_p: float) -> None:
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = top_p_filter(scores.float() / self.temperature, top_p=self.top_p)  # (B, V)
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g) for g in self.generators]
        ).to(scores.device)  # (B, V)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))  # (B, V)
        choice = (logits + gumbel).argmax(dim=-1, keepdim=True)  # (B, 1)
        forced = torch.full_like(scores, float("-inf"))  # (B, V)
        return forced.scatter_(1, choice, 0.0)


def top_p_filter(logits: Any, *, top_p: float) -> Any:
    """Set to -inf every logit outside the smallest set whose probability reaches `top_p`."""
    import torch

    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V), (B, V)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p  # (B, V) mass before ≥ p
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)  # (B, V)
    return logits.masked_fill(drop, float("-inf"))


def length_sorted_batches(
    lengths: Sequence[int], *, caps: Sequence[int], batch_size: int
) -> list[list[int]]:
    """Indices in batches of at most `batch_size`, sorted by length, one token cap per batch.

    A batch never mixes caps: generating past a row's own cap could run past the context of a
    model with learned positions. Caps differ only for prompts near the context limit.
    """
    batches: list[list[int]] = []
    for cap in sorted(set(caps)):
        group = sorted(
            (i for i in range(len(lengths)) if caps[i] == cap), key=lambda i: (lengths[i], i)
        )
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    return batches


class TransformersBackend:
    """Generate with `AutoModelForCausalLM.generate` on left-padded, length-sorted batches."""

    def __init__(self, config: GenerateConfig, *, tokenizer: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = tokenizer
        self.batch_size = config.batch_size
        self.model = AutoModelForCausalLM.from_pretrained(
            config.model,
            dtype=TORCH_DTYPES[config.dtype],
            trust_remote_code=config.trust_remote_code,
        )
        self.model.eval()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.eos_ids = list(end_of_turn_ids(config.model, tokenizer))
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        )

    def generate(
        self,
        prompt_token_ids: Sequence[Sequence[int]],
        *,
        sampling: SamplingConfig,
        seeds: Sequence[int],
        max_tokens: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        caps = per_prompt_max_tokens(
            prompt_token_ids, sampling=sampling, seeds=seeds, max_tokens=max_tokens
        )
        results: list[list[Completion]] = [[] for _ in prompt_token_ids]
        batches = length_sorted_batches(
            [len(p) for p in prompt_token_ids], caps=caps, batch_size=self.batch_size
        )
        for batch in batches:
            rows = [(i, s) for i in batch for s in range(sampling.n)]
            completions = self._generate_rows(
                [prompt_token_ids[i] for i, _ in rows],
                seeds=[sample_seed(seeds[i], s) for i, s in rows],
                caps=[caps[i] for i, _ in rows],
                sampling=sampling,
            )
            for (i, _), completion in zip(rows, completions, strict=True):
                results[i].append(completion)
        return results

    def _generate_rows(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        seeds: list[int],
        caps: list[int],
        sampling: SamplingConfig,
    ) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        input_ids, attention_mask = left_pad(prompts, pad_id=self.pad_id, device=self.device)
        processors = LogitsProcessorList()
        if sampling.temperature > 0:
            processors.append(
                SeededSampler(seeds, temperature=sampling.temperature, top_p=sampling.top_p)
            )
        settings = GenerationConfig(
            max_new_tokens=max(caps),
            do_sample=False,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        with torch.inference_mode():
            sequences = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=settings,
                logits_processor=processors,
            )  # (R, P + T)
        new_tokens = sequences[:, input_ids.shape[1] :].tolist()  # (R, T)
        return [self._completion(row, cap=cap) for row, cap in zip(new_tokens, caps, strict=True)]

    def _completion(self, new_tokens: list[int], *, cap: int) -> Completion:
        """Cut a row at its first EOS (kept, as vLLM does) or at its own cap."""
        ids, reason = new_tokens[:cap], "length"
        for position, token in enumerate(ids):
            if token in self.eos_ids:
                ids, reason = ids[: position + 1], "stop"
                break
        return Completion(completion_text(self.tokenizer, ids), tuple(ids), reason)  # type: ignore[arg-type]

    def close(self) -> None:
        self.model = None
        gc.collect()


def left_pad(prompts: Sequence[Sequence[int]], *, pad_id: int, device: Any) -> tuple[Any, Any]:
    """Left-padded (input_ids, attention_mask), so every row's last token is its newest."""
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)  # (R, P)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (R, P)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)
