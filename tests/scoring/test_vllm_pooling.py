"""vLLM's pooling runner scores exactly what the transformers reward model scores."""

from __future__ import annotations

import armorm_fixture as fx  # shared test helper (tests/ is on sys.path: tests/conftest.py)
import pytest

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.io import read_frame
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import QUARANTINE, SCORES
from prefsmith.scoring.stage import score

pytest.importorskip("vllm")


@pytest.mark.slow
def test_vllm_pooling_scores_equal_transformers_scores(tiny, tmp_path):
    model = tiny.reward_model  # head_dim 32: the smallest vLLM's CPU attention supports
    records = [
        {"prompt": "tell me about the river"},
        {
            "messages": [
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": "count to two"},
            ]
        },
    ]
    prompts, ids = fx.write_prompts(records, tmp_path / "in")
    pairs = [(pid, fx.words(n, seed=n)) for pid in ids for n in (1, 30, 7, 90, 300)]
    responses = fx.write_responses(pairs, tmp_path / "in" / "responses.parquet")
    results = {}
    for kind in ("reward_model", "vllm_pooling"):
        config = ScoreConfig(kind=kind, model=str(model), max_length=256, shard_size=4)
        result = score(
            {"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / kind
        )
        results[kind] = (result, read_frame(result.output, SCORES).sort("response_id"))
    (hf_result, hf), (vllm_result, vl) = results["reward_model"], results["vllm_pooling"]
    assert hf.height == vl.height == 8  # the two 300-word rows are over max_length
    assert vl["response_id"].to_list() == hf["response_id"].to_list()
    assert vl["n_tokens"].to_list() == hf["n_tokens"].to_list()
    assert vl["score"].to_list() == pytest.approx(hf["score"].to_list(), abs=1e-4)
    assert hf["score"].std() > 1e-3  # the scores differ between rows: the comparison has teeth
    for result in (hf_result, vllm_result):
        assert Manifest.read(result.manifest).dropped == {"too_long": 2}
        assert read_frame(result.quarantine, QUARANTINE)["reason"].to_list() == ["too_long"] * 2


@pytest.mark.slow
def test_vllm_pools_at_the_true_last_token_with_pad_equal_to_end_of_turn(tiny, tmp_path):
    """vLLM packs requests and pools each at its own length: a pad id (= eot) inside is harmless."""
    from prefsmith.scoring.batching import ScoreRequest
    from prefsmith.scoring.reward_model import load_reward_model
    from prefsmith.scoring.vllm_pooling import VllmPoolingScorer

    model = fx.build_eot_pad_reward_model(tmp_path / "rm", tiny.tokenizer)
    texts = [fx.words(3), f"{fx.words(20, seed=1)} {fx.EOT} {fx.words(5, seed=2)}", fx.words(70)]
    prompt = [{"role": "user", "content": "tell me about the cat"}]
    requests = [ScoreRequest(f"r{i}", "p", prompt, t) for i, t in enumerate(texts)]
    config = ScoreConfig(kind="vllm_pooling", model=str(model), max_length=256)
    scorer = VllmPoolingScorer(config)
    batched = [o.score for o in scorer(requests)]
    singles = [scorer([r])[0].score for r in requests]
    scorer.close()
    assert batched == pytest.approx(singles, abs=1e-5)
    native = load_reward_model(config.model_copy(update={"kind": "reward_model"}))
    assert batched == pytest.approx([o.score for o in native(requests)], abs=1e-4)
    assert len({round(s, 4) for s in batched}) == 3
