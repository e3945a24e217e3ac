"""prefsmith.curation.export: TRL conversational rows, round-tripped through JSONL, Parquet and datasets."""

from __future__ import annotations

import json
import os
import stat

import polars as pl
import pyarrow.parquet as pq
import pytest

from prefsmith.curation.export import export_hf_dataset, export_trl
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.ids import pair_id
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PAIRS, PAIRS_WITH_REFERENCE

MESSAGES = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": 'Say "hi" in French\n— ünïcode ✓'}],
]
TEXTS = [("4", "five"), ('Salut "toi"\n', "bonjour\tmonde")]


def pairs_rows() -> list[dict]:
    return [
        {
            "pair_id": pair_id(f"p{i}-0", f"p{i}-1"),
            "prompt_id": f"p{i}",
            "messages": messages,
            "chosen": chosen,
            "rejected": rejected,
            "chosen_response_id": f"p{i}-0",
            "rejected_response_id": f"p{i}-1",
            "score_chosen": 1.0,
            "score_rejected": 0.5,
            "margin": 0.5,
            "strategy": "best_vs_worst",
            "scorer": "rm",
        }
        for i, (messages, (chosen, rejected)) in enumerate(zip(MESSAGES, TEXTS, strict=True))
    ]


@pytest.fixture
def pairs_path(tmp_path):
    return write_table(pairs_rows(), tmp_path / "pairs.parquet", PAIRS)


REFERENCE = [(-1.25, -2.5), (-3.0625, -0.75)]  # exact in binary: equality survives JSON


def pairs_ref_rows() -> list[dict]:
    return [
        {
            **row,
            "ref_logp_chosen": chosen,
            "ref_logp_rejected": rejected,
            "ref_tokens_chosen": 1,
            "ref_tokens_rejected": 2,
            "ref_model": "ref",
        }
        for row, (chosen, rejected) in zip(pairs_rows(), REFERENCE, strict=True)
    ]


def expected_rows(*, reference: bool = False) -> list[dict]:
    rows = []
    for source, (chosen, rejected) in zip(pairs_rows(), TEXTS, strict=True):
        rows.append(
            {
                "pair_id": source["pair_id"],
                "prompt": source["messages"],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "score_chosen": 1.0,
                "score_rejected": 0.5,
                "margin": 0.5,
            }
        )
    if reference:
        for row, (ref_chosen, ref_rejected) in zip(rows, REFERENCE, strict=True):
            row.update(ref_chosen_logps=ref_chosen, ref_rejected_logps=ref_rejected)
    return rows


@pytest.fixture
def pairs_ref_path(tmp_path):
    return write_table(pairs_ref_rows(), tmp_path / "pairs_ref.parquet", PAIRS_WITH_REFERENCE)


def test_jsonl_round_trip(pairs_path, tmp_path):
    out = export_trl(pairs_path, out=tmp_path / "trl" / "pairs.jsonl")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected_rows()


def test_parquet_round_trip(pairs_path, tmp_path):
    out = export_trl(pairs_path, out=tmp_path / "trl.parquet", format="parquet")
    assert pq.read_table(out).to_pylist() == expected_rows()


def test_hf_dataset_round_trip(pairs_path, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = export_hf_dataset(pairs_path, out_dir=tmp_path / "ds")
    loaded = datasets.load_from_disk(str(out))
    assert len(loaded) == 2
    assert loaded.to_list() == expected_rows()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_pairs_ref_keeps_scores_margin_and_reference_logps(pairs_ref_path, tmp_path, fmt):
    out = export_trl(pairs_ref_path, out=tmp_path / f"ref.{fmt}", format=fmt)
    if fmt == "jsonl":
        back = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        back = pq.read_table(out).to_pylist()
    assert back == expected_rows(reference=True)


def test_sharded_pairs_ref_exports_every_shard(tmp_path):
    rows = pairs_ref_rows()
    for index, row in enumerate(rows):
        write_table([row], tmp_path / "shards" / f"shard-{index:05d}.parquet", PAIRS_WITH_REFERENCE)
    out = export_trl(tmp_path / "shards", out=tmp_path / "ref.jsonl")
    back = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["ref_chosen_logps"] for r in back] == [-1.25, -3.0625]


@pytest.mark.slow  # importing trl (torch, transformers) takes ~15 s on two busy cores
def test_trl_reads_the_export(pairs_path, tmp_path):
    """TRL's own preference-format helpers accept the rows (skipped where trl is missing)."""
    pytest.importorskip("trl")
    from trl.data_utils import is_conversational, maybe_extract_prompt

    out = export_trl(pairs_path, out=tmp_path / "pairs.jsonl")
    for line in out.read_text().splitlines():
        row = json.loads(line)
        assert is_conversational(row)
        assert maybe_extract_prompt(row)["prompt"] == row["prompt"]


@pytest.mark.slow  # trl import plus a tiny DPOTrainer: ~25 s on two busy cores
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_trl_dpo_trainer_loads_the_export_with_reference_logps(tiny, pairs_ref_path, tmp_path, fmt):
    """TRL's DPOTrainer loads the exported file through `datasets`, tokenizes it with the tiny
    policy's chat template, and its collator hands our reference log-probs to the loss."""
    pytest.importorskip("trl")
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = export_trl(pairs_ref_path, out=tmp_path / f"ref.{fmt}", format=fmt)
    loader = "json" if fmt == "jsonl" else "parquet"
    dataset = datasets.load_dataset(loader, data_files=str(out), split="train")
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, bf16=False, max_length=None
    )
    tokenizer = AutoTokenizer.from_pretrained(str(tiny.policy))
    model = AutoModelForCausalLM.from_pretrained(str(tiny.policy))
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    tokenized = trainer.train_dataset
    assert len(tokenized) == 2 and all(len(row["chosen_ids"]) > 0 for row in tokenized)
    batch = trainer.data_collator([tokenized[i] for i in range(2)])
    assert batch["ref_chosen_logps"].tolist() == [c for c, _ in REFERENCE]
    assert batch["ref_rejected_logps"].tolist() == [r for _, r in REFERENCE]


def test_unknown_format_is_a_config_error(pairs_path, tmp_path):
    with pytest.raises(ConfigError, match="format='csv' is not supported"):
        export_trl(pairs_path, out=tmp_path / "x.csv", format="csv")  # type: ignore[arg-type]
    assert not (tmp_path / "x.csv").exists()
    assert pl.read_parquet(pairs_path).height == 2


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_export_honours_the_umask(pairs_path, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        jsonl = export_trl(pairs_path, out=tmp_path / "a.jsonl")
        parquet = export_trl(pairs_path, out=tmp_path / "a.parquet", format="parquet")
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (jsonl, parquet)] == [mode, mode]
