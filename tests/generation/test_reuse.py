"""Incremental rebuilds at the stage level (prefsmith.generation.reuse, prefsmith.scoring.reuse):
a second build with 10% new prompts generates and scores only those, its manifests count the
rest as reused, and every row equals a fresh computation without the store (same seeds). A
build whose inputs are all in the store never loads the model; a changed sampling seed or a
changed response text is not reused."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_prompt_texts

from prefsmith.generation.stage import generate
from prefsmith.schemas.data_configs import GenerateConfig, ScoreConfig
from prefsmith.schemas.io import read_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import RESPONSES, SCORES
from prefsmith.scoring.stage import score


def generate_config(tiny, store: Path | None, *, seed: int = 3) -> GenerateConfig:
    return GenerateConfig(
        model=str(tiny.policy),
        backend="transformers",
        shard_size=4,
        batch_size=1,  # one prompt per forward: a row does not depend on its batch
        max_model_len=128,
        sampling={"n": 2, "temperature": 1.0, "max_new_tokens": 10, "seed": seed},
        store=str(store) if store else None,
    )


def build(tiny, prompts: Path, out: Path, store: Path | None, **options) -> dict:
    gen = generate(
        {"prompts": prompts}, config=generate_config(tiny, store, **options), out_dir=out
    )
    scorer = ScoreConfig(
        kind="reward_model", model=str(tiny.reward_model), store=str(store) if store else None
    )
    scored = score({"responses": gen.output, "prompts": prompts}, config=scorer, out_dir=out)
    return {
        "responses": read_table(gen.output, RESPONSES).sort_by("response_id"),
        "scores": read_table(scored.output, SCORES).sort_by("response_id"),
        "generate": Manifest.read(gen.manifest).extra,
        "score": Manifest.read(scored.manifest).extra,
    }


def test_rebuild_with_new_prompts_reuses_the_rest_and_equals_a_fresh_build(
    tiny, make_prompts, tmp_path
):
    texts = tiny_prompt_texts(22, seed=5)
    old, new = make_prompts(texts[:20], name="old"), make_prompts(texts, name="new")
    store = tmp_path / "store"
    first = build(tiny, old, tmp_path / "b1", store)
    assert (first["generate"]["rows_reused"], first["generate"]["rows_computed"]) == (0, 40)

    rebuilt = build(tiny, new, tmp_path / "b2", store)
    assert (rebuilt["generate"]["rows_reused"], rebuilt["generate"]["rows_computed"]) == (40, 4)
    assert (rebuilt["score"]["rows_reused"], rebuilt["score"]["rows_computed"]) == (40, 4)

    fresh = build(tiny, new, tmp_path / "fresh", None)
    assert (fresh["generate"]["rows_reused"], fresh["score"]["rows_reused"]) == (0, 0)
    assert rebuilt["responses"].equals(fresh["responses"])
    assert rebuilt["scores"].equals(fresh["scores"])


def test_nothing_new_loads_no_model_and_a_new_seed_is_not_reused(
    tiny, make_prompts, tmp_path, monkeypatch
):
    prompts = make_prompts(tiny_prompt_texts(8, seed=6))
    store = tmp_path / "store"
    build(tiny, prompts, tmp_path / "b1", store)

    import prefsmith.generation.stage as stage

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every prompt was in the store")

    with monkeypatch.context() as patch:
        patch.setattr(stage, "load_backend", no_model)
        again = build(tiny, prompts, tmp_path / "b2", store)
    assert (again["generate"]["rows_reused"], again["generate"]["rows_computed"]) == (16, 0)
    assert (again["score"]["rows_reused"], again["score"]["rows_computed"]) == (16, 0)

    reseeded = build(tiny, prompts, tmp_path / "b3", store, seed=4)
    assert reseeded["generate"]["rows_reused"] == 0
    # new texts under the same response ids: their scores are computed, not taken
    changed = (
        reseeded["responses"]["response"].to_pylist() != again["responses"]["response"].to_pylist()
    )
    assert changed and reseeded["score"]["rows_reused"] < 16
