"""The evaluate flow end to end on the tiny models: vLLM (CPU) samples, rule scores, held-out
pairs from the base samples, both log-prob passes, the KL pass, and the three reports."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from prefsmith.evaluation.compare import REPORT_KEYS
from prefsmith.flows.quickstart import quickstart_config
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.pipeline_config import PipelineConfig
from prefsmith.schemas.tables import PROMPTS


@pytest.mark.slow
def test_evaluate_flow_writes_every_part(tiny, tuned_policy, tmp_path, prefect_home):
    from prefsmith.flows.evaluate import evaluate
    from prefsmith.generation.prompts import load_prompts

    data = quickstart_config(tmp_path, tiny.policy)
    data["isolate_stages"] = False
    data["evaluate"] = {
        "sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 16},
        "n_boot": 200,
    }
    config = parse_config(PipelineConfig, data)
    prompts = load_prompts({}, config=config.prompts, out_dir=tmp_path / "all").output
    heldout = write_table(
        read_frame(prompts, PROMPTS).head(8), tmp_path / "prompts.heldout.parquet", PROMPTS
    )
    report_path = Path(evaluate(config, str(tuned_policy), str(heldout), str(tmp_path / "run")))
    report = json.loads(report_path.read_text())
    assert tuple(sorted(report)) == tuple(sorted(REPORT_KEYS))
    out = report_path.parent
    kl = Manifest.read(next((out / "kl").glob("kl.manifest.json")))
    assert (
        report["kl"]["n_samples"] == kl.rows_out == kl.rows_in == 16
    )  # 8 prompts x 2 tuned samples
    assert report["kl"]["kl_seq_mean"] > 0 and report["kl"]["k3_seq_mean"] > 0
    pairs = pl.read_parquet(out / "heldout_pairs" / "pairs.parquet")
    assert report["heldout_pairs"]["n_pairs"] == pairs.height
    assert report["lm_eval"]["status"] == "not_requested"
    assert report["win_rate"]["n"] == 8 and 0 <= report["win_rate"]["rate"] <= 1
    page = (out / "eval_report.html").read_text()
    assert page.count('class="chart"') == 5 + (pairs.height > 0)
