"""prefsmith's own implementation of the ArmoRM architecture (no remote code).

ArmoRM (Wang et al., "Interpretable Preferences via Multi-Objective Reward Modeling and
Mixture-of-Experts", arXiv:2406.12845). ArmoRM-Llama3-8B-v0.1 ships `modeling_custom.py`
(`LlamaForRewardModelWithGating`), which imports names that transformers 5 removed; this module
loads the same checkpoint folder (config.json + `*.safetensors`) under the published parameter
names, so the pinned transformers runs it with no code from the checkpoint:

| parameter                         | shape         | role                                   |
|-----------------------------------|---------------|----------------------------------------|
| `model.*`                         |               | a transformers `LlamaModel` backbone   |
| `regression_layer.weight`         | (K, H)        | per-objective rewards, no bias         |
| `gating.layers.{i}.weight / bias` | (D, H) … (K, D) | the gating MLP: n ReLU layers + output |
| `gating.logit_scale`              | (1,)          | scales the gating softmax              |
| `reward_transform_matrix`         | (K, K)        | mixes rewards before gating            |

With h_last the hidden state at each row's last real token and h_prompt the one at the prompt's
end (the token before the assistant header, where the published code finds
`<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n`):

    rewards = regression_layer(h_last)                               (B, K)
    gates   = softmax(mlp(h_prompt) / temperature) · logit_scale     (B, K)
    score   = Σ_k gates_k · (rewards @ reward_transform_matrix)_k    (B,)

equivalently score = Σ_k rewards_k · coeffs_k with coeffs = gates @ reward_transform_matrixᵀ
(the model card's `multi_obj_coeffs`). Config keys read as the published code does:
`num_objectives` (19), `gating_temperature` (10), `gating_hidden_dim` (1024),
`gating_n_hidden` (3). Positions are given by the caller, found from sequence lengths and the
chat template, never from a pad id.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel

ARCHITECTURE = "LlamaForRewardModelWithGating"

# The 19 objectives of ArmoRM-Llama3-8B-v0.1 in regression-layer order (its model card).
ARMORM_OBJECTIVES = (
    "helpsteer-helpfulness",
    "helpsteer-correctness",
    "helpsteer-coherence",
    "helpsteer-complexity",
    "helpsteer-verbosity",
    "ultrafeedback-overall_score",
    "ultrafeedback-instruction_following",
    "ultrafeedback-truthfulness",
    "ultrafeedback-honesty",
    "ultrafeedback-helpfulness",
    "beavertails-is_safe",
    "prometheus-score",
    "argilla-overall_quality",
    "argilla-judge_lm",
    "code-complexity",
    "code-style",
    "code-explanation",
    "code-instruction-following",
    "code-readability",
)


class GatingNetwork(nn.Module):
    """The prompt-conditioned gate: ReLU MLP, softmax at a temperature, times a learned scale."""

    def __init__(
        self, in_features: int, out_features: int, *, temperature: float, hidden: int, depth: int
    ):
        super().__init__()
        self.temperature = temperature
        self.logit_scale = nn.Parameter(torch.ones(1))
        sizes = [in_features] + [hidden] * depth + [out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H) prompt features -> (B, K) gating weights."""
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))  # (B, D)
        x = self.layers[-1](x)  # (B, K)
        return torch.softmax(x / self.temperature, dim=-1) * self.logit_scale[0]  # (B, K)


@dataclass
class ArmoRMOutput:
    """What one forward gives: score (B,), rewards (B, K), gating_output (B, K)."""

    score: torch.Tensor
    rewards: torch.Tensor
    gating_output: torch.Tensor


class ArmoRMForScoring(LlamaPreTrainedModel):
    """An ArmoRM checkpoint's modules under their published names, scored at given positions."""

    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        k = int(getattr(config, "num_objectives", 19))
        self.num_objectives = k
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, k, bias=False)
        self.gating = GatingNetwork(
            config.hidden_size,
            k,
            temperature=float(getattr(config, "gating_temperature", 10)),
            hidden=int(getattr(config, "gating_hidden_dim", 1024)),
            depth=int(getattr(config, "gating_n_hidden", 3)),
        )
        self.reward_transform_matrix = nn.Parameter(torch.eye(k), requires_grad=False)
        self.post_init()

    def forward(
        self, input_ids, attention_mask, *, last: torch.Tensor, gate: torch.Tensor
    ) -> ArmoRMOutput:
        """Score right-padded rows; `last` (B,) and `gate` (B,) are token positions per row."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)  # (B,)
        rewards = self.regression_layer(hidden[rows, last.to(hidden.device)])  # (B, K)
        gates = self.gating(hidden[rows, gate.to(hidden.device)])  # (B, K)
        adjusted = rewards @ self.reward_transform_matrix  # (B, K)
        score = (gates * adjusted).sum(dim=-1)  # (B,)
        return ArmoRMOutput(score=score, rewards=rewards, gating_output=gates)
