"""`prefsmith eval` through the real CLI: a config without a `prompts:` section goes on to the
held-out table of `--run-dir`, and a stage that fails inside the evaluate flow prints one `error:`
line, exit code 2, with Prefect's tracebacks in `<run-dir>/logs/prefect.log` instead of the
terminal (before, the same case printed 67 lines of them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.slow  # a Prefect temporary server and a tokenizer load: ~20 s
INHERITED = {"VLLM_LOGGING_LEVEL", "PREFECT_LOGGING_LEVEL", "PREFSMITH_VERBOSE"}
INHERITED |= {"PREFSMITH_QUIETED_VLLM"}


def prefsmith(*args: str, home) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update(COLUMNS="250", PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    command = [sys.executable, "-m", "prefsmith.flows.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_a_failing_eval_is_one_line_and_needs_no_prompts_section(tiny, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    heldout = run / "prompts.heldout.parquet"  # a table, but not a prompts table
    pq.write_table(pa.table({"text": ["a", "b"]}), heldout)
    shutil.copytree(tiny.policy, run / "checkpoint" / "final")
    generate = {"model": str(tiny.policy), "backend": "transformers", "dtype": "float32"}
    generate.update(max_model_len=128, sampling={"n": 1, "max_new_tokens": 4})
    config = {  # no prompts: section (eval samples the held-out table); stages in this process
        "isolate_stages": False,
        "generate": generate,
        "score": {"kind": "rule", "rule": "length_target", "params": {"target": 5}},
        "evaluate": {"kl": False, "heldout_pairs": False, "n_boot": 100},
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    done = prefsmith("eval", str(tmp_path / "eval.yaml"), "--run-dir", str(run), home=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    # the flow ran past the config (no prompts: needed) to the held-out table's own check
    assert len(lines) == 1 and lines[0].startswith(f"error: {heldout}: missing column"), lines
    assert "Traceback" in (run / "logs" / "prefect.log").read_text()  # Prefect's records, kept
