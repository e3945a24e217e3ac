"""Native ArmoRM on a tiny checkpoint in the published layout, against a plain-torch forward.

The checkpoint (tests/armorm_fixture.py) has ArmoRM-Llama3-8B-v0.1's config keys and parameter
names, Llama-3's chat template, pad token = `<|eot_id|>` and no pad_token_id in the model config,
a non-identity reward transform, and a modeling_custom.py that fails on transformers 5 as the
real one does.
"""

from __future__ import annotations

import armorm_fixture as fx  # shared test helper (tests/ is on sys.path: tests/conftest.py)
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, LlamaConfig, LlamaModel

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import read_frame
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import RESPONSES, SCORES
from prefsmith.scoring.armorm import load_armorm
from prefsmith.scoring.batching import ScoreRequest
from prefsmith.scoring.stage import score

RECORDS = [{"prompt": "tell me about the star"}, {"prompt": "count to nine"}]
# One response holds the end-of-turn (= pad) token inside it: a pad-id pooler would stop there.
TEXTS = [fx.words(2), f"{fx.words(30, seed=1)} {fx.EOT} {fx.words(9, seed=2)}", fx.words(17)]


@pytest.fixture(scope="module")
def armorm(tiny, tmp_path_factory):
    """Folder of a tiny ArmoRM checkpoint in the published layout."""
    return fx.build_published_armorm(tmp_path_factory.mktemp("armo") / "armorm", tiny.tokenizer)


class Oracle:
    """ArmoRM's math in plain torch ops on the checkpoint's state dict, one unpadded row."""

    def __init__(self, path):
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.config = LlamaConfig.from_pretrained(str(path))
        self.w = load_file(str(path / "model.safetensors"))
        backbone = {k.removeprefix("model."): v for k, v in self.w.items() if k[:6] == "model."}
        self.backbone = LlamaModel(self.config).eval()
        self.backbone.load_state_dict(backbone)
        t = self.tokenizer
        header = [fx.EOT, fx.HEADER_START]
        self.pattern = [
            *t.convert_tokens_to_ids(header),
            *t.encode("assistant", add_special_tokens=False),
        ]
        self.pattern.append(t.convert_tokens_to_ids(fx.HEADER_END))

    def gate_index(self, ids: list[int]) -> int:
        """The last occurrence of eot + assistant header, as the published code searches."""
        n = len(self.pattern)
        return max(j for j in range(len(ids) - n + 1) if ids[j : j + n] == self.pattern)

    def __call__(self, messages, text):
        chat = [*messages, {"role": "assistant", "content": text}]
        rendered = self.tokenizer.apply_chat_template(chat, tokenize=False)
        ids = self.tokenizer(rendered, add_special_tokens=False).input_ids
        with torch.inference_mode():
            hidden = self.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]  # (T, H)
        w = self.w
        rewards = w["regression_layer.weight"] @ hidden[-1]  # (K,)
        x = hidden[self.gate_index(ids)]  # (H,)
        for i in range(3):
            x = torch.relu(w[f"gating.layers.{i}.weight"] @ x + w[f"gating.layers.{i}.bias"])
        logits = w["gating.layers.3.weight"] @ x + w["gating.layers.3.bias"]  # (K,)
        gates = torch.softmax(logits / 10, dim=0) * w["gating.logit_scale"][0]  # (K,)
        coeffs = gates @ w["reward_transform_matrix"].T  # (K,) the model card's multi_obj_coeffs
        return float((rewards * coeffs).sum()), rewards.tolist(), gates.tolist(), len(ids)


def _inputs(tmp_path):
    prompts, ids = fx.write_prompts(RECORDS, tmp_path / "in")
    pairs = [(pid, text) for pid in ids for text in TEXTS]
    return fx.write_responses(pairs, tmp_path / "in" / "responses.parquet"), prompts, ids


def test_native_armorm_equals_the_independent_forward(armorm, tmp_path):
    responses, prompts, ids = _inputs(tmp_path)
    config = ScoreConfig(kind="armorm", model=str(armorm), shard_size=4)  # no trust_remote_code
    result = score(
        {"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out"
    )
    scores = read_frame(result.output, SCORES).join(
        read_frame(responses, RESPONSES).select(
            "response_id", "response", pl.col("n_tokens").alias("response_tokens")
        ),
        on="response_id",
    )
    assert scores.height == 6 and Manifest.read(result.manifest).dropped == {}
    oracle = Oracle(armorm)
    messages = {
        pid: [{"role": "user", "content": r["prompt"]}] for pid, r in zip(ids, RECORDS, strict=True)
    }
    names = list(fx.OBJECTIVE_NAMES)
    gate_sums = {}
    for row in scores.iter_rows(named=True):
        expected, rewards, gates, n_tokens = oracle(messages[row["prompt_id"]], row["response"])
        objectives = row["objectives"]
        assert [o["name"] for o in objectives] == names + [f"gate/{n}" for n in names]
        assert [o["value"] for o in objectives[:19]] == pytest.approx(rewards, abs=1e-5)
        assert [o["value"] for o in objectives[19:]] == pytest.approx(gates, abs=1e-5)
        assert row["score"] == pytest.approx(expected, abs=1e-5)
        # scores.n_tokens is the response's own count, not the prompt + response the RM read
        assert row["n_tokens"] == row["response_tokens"] and row["n_tokens"] < n_tokens
        gate_sums[row["prompt_id"]] = sum(gates)
    assert gate_sums[ids[0]] == pytest.approx(1.7, abs=1e-5)  # softmax × logit_scale
    assert scores["score"].n_unique() == 6  # distinct per response: no shared pooling position


def test_batched_equals_one_at_a_time_with_pad_equal_to_end_of_turn(armorm):
    scorer = load_armorm(ScoreConfig(kind="armorm", model=str(armorm), token_budget=100_000))
    assert scorer.tokenizer.pad_token == fx.EOT and scorer.model.config.pad_token_id is None
    requests = [
        ScoreRequest(f"r{i}", "p", [{"role": "user", "content": RECORDS[i % 2]["prompt"]}], t)
        for i, t in enumerate([*TEXTS, fx.words(80, seed=4), ""])
    ]
    batched = scorer(requests)
    singles = [scorer([r])[0] for r in requests]
    for one, many in zip(singles, batched, strict=True):
        assert many.score == pytest.approx(one.score, abs=1e-5)
        assert [v for _, v in many.objectives] == pytest.approx(
            [v for _, v in one.objectives], abs=1e-5
        )
    assert max(o.n_tokens for o in batched) - min(o.n_tokens for o in batched) > 60


def test_trust_remote_code_on_stale_checkpoint_code_is_one_line(armorm, tmp_path):
    responses, prompts, _ = _inputs(tmp_path)
    config = ScoreConfig(kind="armorm", model=str(armorm), trust_remote_code=True)
    with pytest.raises(ConfigError) as caught:
        score({"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "o")
    message = str(caught.value)
    assert "ImportError" in message and "drop trust_remote_code" in message
    assert "\n" not in message


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize("kind", ["reward_model", "vllm_pooling"])
def test_other_kinds_on_an_armorm_checkpoint_name_kind_armorm(armorm, tmp_path, kind, remote):
    responses, prompts, _ = _inputs(tmp_path)
    config = ScoreConfig(kind=kind, model=str(armorm), trust_remote_code=remote)
    with pytest.raises(ConfigError, match="use kind: armorm") as caught:
        score({"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "o")
    assert "\n" not in str(caught.value) and not (tmp_path / "o" / "scores").exists()


def test_missing_armorm_parameters_are_refused(armorm, tmp_path):
    import shutil

    from safetensors.torch import save_file

    folder = tmp_path / "partial"
    shutil.copytree(armorm, folder)
    weights = load_file(str(folder / "model.safetensors"))
    del weights["reward_transform_matrix"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="reward_transform_matrix"):
        load_armorm(ScoreConfig(kind="armorm", model=str(folder)))
