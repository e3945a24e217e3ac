"""prefsmith.curation.export: TRL conversational rows, round-tripped through JSONL, Parquet and datasets."""

from __future__ import annotations

import json

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


def expected_rows() -> list[dict]:
    return [
        {
            "prompt": messages,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        for messages, (chosen, rejected) in zip(MESSAGES, TEXTS, strict=True)
    ]


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


def test_pairs_with_reference_columns_export_the_same(tmp_path):
    rows = [
        {
            **r,
            "ref_logp_chosen": -1.0,
            "ref_logp_rejected": -2.0,
            "ref_tokens_chosen": 1,
            "ref_tokens_rejected": 2,
            "ref_model": "ref",
        }
        for r in pairs_rows()
    ]
    path = write_table(rows, tmp_path / "pairs_ref.parquet", PAIRS_WITH_REFERENCE)
    out = export_trl(path, out=tmp_path / "ref.jsonl")
    assert [json.loads(line) for line in out.read_text().splitlines()] == expected_rows()


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


def test_unknown_format_is_a_config_error(pairs_path, tmp_path):
    with pytest.raises(ConfigError, match="format='csv' is not supported"):
        export_trl(pairs_path, out=tmp_path / "x.csv", format="csv")  # type: ignore[arg-type]
    assert not (tmp_path / "x.csv").exists()
    assert pl.read_parquet(pairs_path).height == 2
