"""Duplicate (response_id, scorer) score rows are quarantined as `duplicate_score`, never averaged;
identical texts never pair. Hand-built tables, both input paths (streamed and sorted)."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the table builders of test_pairs_strategies
from test_pairs_strategies import triples, write_inputs

from prefsmith.curation.pairs import build_pairs
from prefsmith.schemas.data_configs import PairsConfig
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS, QUARANTINE, SCORES

# (prompt, sample, text, score, tokens)
ROWS = [
    ("a", 0, "x", 1.0, 1),
    ("a", 1, "y", 3.0, 1),
    ("a", 2, "z", 2.0, 1),
    ("b", 0, "p", 1.0, 1),
    ("b", 1, "q", 2.0, 1),
    ("b", 2, "r", 0.5, 1),
    ("c", 0, "m", 1.0, 1),
    ("c", 1, "n", 2.0, 1),
]
# a-1 again with its score (agrees: one copy extra); b-1 and c-0 again with another score
# (disagree: neither copy is trusted)
DUPLICATES = [("a-1", "a", 3.0), ("b-1", "b", 9.0), ("c-0", "c", 3.0)]


def write_scores(path: Path, *, grouped: bool) -> None:
    """The scores with the duplicates beside their originals (grouped: the streaming path) or
    appended at the end (prompts out of order: the sorted fallback)."""
    rows = [(f"{p}-{i}", p, s) for p, i, _, s, _ in ROWS]
    rows = sorted(rows + DUPLICATES) if grouped else rows + DUPLICATES
    write_table(
        [
            {"response_id": r, "prompt_id": p, "scorer": "rm", "score": s}
            | {"objectives": [], "n_tokens": 1}
            for r, p, s in rows
        ],
        path,
        SCORES,
    )


def run(root: Path, *, grouped: bool, **config):
    paths = write_inputs(root / "in", ROWS)
    write_scores(paths["scores"], grouped=grouped)
    result = build_pairs(paths, config=PairsConfig(**config), out_dir=root / "out")
    pairs = read_frame(result.output, PAIRS)
    return pairs, Manifest.read(result.manifest), read_frame(result.quarantine, QUARANTINE)


@pytest.mark.parametrize("grouped", [True, False], ids=["streamed", "sorted"])
def test_duplicate_scores_are_quarantined_not_averaged(tmp_path, grouped):
    """a: the extra equal copy goes, a-1 (3.0) still beats a-0 (1.0). b: b-1's copies disagree
    (2.0, 9.0) so both go and b-0 (1.0) vs b-2 (0.5) remains; averaging would have made b-1 5.5
    and the pair b-1 vs b-2 with margin 5.0. c: c-0's copies go, one response is left."""
    pairs, manifest, quarantine = run(tmp_path, grouped=grouped)
    assert triples(pairs) == {("a-1", "a-0", 2.0), ("b-0", "b-2", 0.5)}
    assert sorted(quarantine["row_ref"]) == ["a-1", "b-1", "b-1", "c-0", "c-0"]
    assert set(quarantine["reason"]) == {"duplicate_score"}
    assert quarantine.filter(pl.col("row_ref") == "b-1")["raw"].str.contains("9.0").any()
    counts = manifest.extra["responses"]
    assert counts["duplicate_score"] == 5 and counts["responses_ranked"] == 6
    assert counts["scores_in"] == len(ROWS) + len(DUPLICATES) == 11
    dropped = sum(counts[r] for r in ("missing_response", "prompt_id_mismatch"))
    dropped += counts["non_finite_score"] + counts["duplicate_score"]
    assert counts["scores_in"] == dropped + counts["duplicate_response_merged"] + 6
    assert manifest.dropped == {"fewer_than_two_responses": 1}  # c
    assert manifest.rows_in == 3 == manifest.rows_out + sum(manifest.dropped.values())
    assert manifest.rows_written == {"pairs": 2, "quarantine": 5}


def test_both_paths_write_the_same_tables(tmp_path):
    streamed = run(tmp_path / "s", grouped=True, strategy="top_k_pairs", top_k=3)
    fallback = run(tmp_path / "f", grouped=False, strategy="top_k_pairs", top_k=3)
    assert streamed[0].equals(fallback[0]) and streamed[2].equals(fallback[2])
    assert triples(streamed[0]) == {
        ("a-1", "a-0", 2.0),
        ("a-1", "a-2", 1.0),
        ("a-2", "a-0", 1.0),
        ("b-0", "b-2", 0.5),
    }


def test_identical_texts_never_pair_by_construction(tmp_path):
    """Texts equal within a prompt merge into one response (counted `duplicate_response_merged`)
    before pairing, so the pairs stage cannot write chosen == rejected, under any strategy."""
    rows = [("d", i, "same", float(i), 1) for i in range(4)] + [("d", 4, "other", 0.5, 1)]
    for strategy in ("best_vs_worst", "best_vs_random", "top_k_pairs"):
        paths = write_inputs(tmp_path / strategy / "in", rows)
        result = build_pairs(
            paths, config=PairsConfig(strategy=strategy, top_k=5), out_dir=tmp_path / strategy
        )
        pairs = read_frame(result.output, PAIRS)
        assert pairs["chosen"].to_list() == ["same"] and pairs["rejected"].to_list() == ["other"]
        counts = Manifest.read(result.manifest).extra["responses"]
        assert counts["duplicate_response_merged"] == 3 and counts["responses_ranked"] == 2
