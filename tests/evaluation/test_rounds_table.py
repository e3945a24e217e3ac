"""The rounds summary (prefsmith.evaluation.rounds_table): one row per round from its record
and reports, the markdown table, and the files written."""

from __future__ import annotations

import json

from prefsmith.evaluation.rounds_table import (
    COLUMNS,
    HEADERS,
    fmt_rate,
    round_row,
    rounds_markdown,
    short_generator,
    write_rounds_summary,
)


def report(rate, low, high, n, *, reward=0.5, kl=None, accuracy=None) -> dict:
    return {
        "win_rate": {"rate": rate, "low": low, "high": high, "n": n, "wins": 1},
        "tuned": {"mean_reward": reward, "mean_tokens": 7.25},
        "kl": {"kl_seq_mean": kl} if kl is not None else None,
        "heldout_pairs": {"accuracy": accuracy} if accuracy is not None else None,
    }


def records(tmp_path) -> list[dict]:
    paths = {}
    for name, body in {
        "r1": report(0.625, 0.5, 0.75, 16, kl=1.25, accuracy=0.875),
        "r2": report(0.75, 0.625, 0.875, 16, reward=0.75, kl=2.5),
        "r2p": report(0.5625, 0.375, 0.75, 16),
    }.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(body))
    return [
        {"round": 1, "generator": "base@ab", "pairs": 10, "eval_report": str(paths["r1"])},
        {
            "round": 2,
            "generator": "final@cd",
            "pairs": 9,
            "eval_report": str(paths["r2"]),
            "eval_vs_previous": str(paths["r2p"]),
        },
    ]


def test_rows_take_each_rounds_reports(tmp_path):
    first, second = (round_row(r) for r in records(tmp_path))
    assert first["win_vs_base"] == {"rate": 0.625, "low": 0.5, "high": 0.75, "n": 16}
    assert first["win_vs_previous"] is None  # round 1 has no round before it
    assert (first["kl"], first["heldout_accuracy"], first["pairs"]) == (1.25, 0.875, 10)
    assert second["win_vs_previous"]["rate"] == 0.5625 and second["heldout_accuracy"] is None
    assert (second["mean_reward"], second["generator"]) == (0.75, "final@cd")


def test_a_round_without_evaluation_has_empty_cells(tmp_path):
    row = round_row({"round": 1, "generator": "g", "pairs": 3})
    assert row["win_vs_base"] is None and row["mean_reward"] is None and row["kl"] is None


def test_markdown_has_one_line_per_round_with_intervals(tmp_path):
    rows = [round_row(r) for r in records(tmp_path)]
    lines = rounds_markdown(rows).splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| " + " | ".join(HEADERS[c] for c in COLUMNS) + " |"
    assert table[1:] == [
        "| 1 | base@ab | 10 | 62.5% (50.0–75.0) | - | 0.500 | 7.2 | 1.250 | 87.5% |",
        "| 2 | final@cd | 9 | 75.0% (62.5–87.5) | 56.2% (37.5–75.0) | 0.750 | 7.2 | 2.500 | - |",
    ]
    assert fmt_rate(None) == "-"
    assert short_generator("final@3fe9c8e3b80c6ee3") == "final@3fe9c8e3"


def test_summary_files_round_trip(tmp_path):
    path = write_rounds_summary(tmp_path, records(tmp_path))
    assert [r["round"] for r in json.loads(path.read_text())["rounds"]] == [1, 2]
    assert (tmp_path / "rounds.md").read_text().count("\n| ") == 3
