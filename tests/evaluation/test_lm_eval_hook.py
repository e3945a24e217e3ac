"""The lm-eval hook: plain message when lm-eval is missing, nothing run when no task is named."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from prefsmith.evaluation.lm_eval_hook import lm_eval_stage, run_lm_eval
from prefsmith.schemas.eval_configs import LmEvalConfig
from prefsmith.schemas.manifest import Manifest


@pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is not None, reason="lm-eval is installed here"
)
def test_not_installed_says_so_plainly(tmp_path):
    result = lm_eval_stage(
        {},
        config=LmEvalConfig(checkpoint="ckpt", tasks=["hellaswag", "arc_easy"]),
        out_dir=tmp_path,
    )
    data = json.loads(result.output.read_text())
    assert data == {
        "status": "not_installed",
        "tasks": ["hellaswag", "arc_easy"],
        "results": {},
        "message": "lm-eval is not installed; skipped tasks: hellaswag, arc_easy",
    }
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out, manifest.dropped) == (
        2,
        0,
        {"lm_eval_not_installed": 2},
    )


def test_no_tasks_means_not_requested():
    assert run_lm_eval("ckpt", tasks=[]) == {
        "status": "not_requested",
        "tasks": [],
        "results": {},
        "message": "no lm-eval tasks requested",
    }


def test_installed_runs_simple_evaluate_on_the_checkpoint(monkeypatch):
    """A stand-in `lm_eval` module records the call; numpy numbers and 'N/A' come back JSON-safe."""
    calls = []
    fake = types.ModuleType("lm_eval")
    fake.__spec__ = importlib.machinery.ModuleSpec("lm_eval", None)

    def simple_evaluate(**kwargs):
        calls.append(kwargs)
        return {
            "results": {"arc_easy": {"acc,none": np.float64(0.25), "acc_stderr,none": "N/A"}},
            "config": object(),
        }

    fake.simple_evaluate = simple_evaluate
    monkeypatch.setitem(sys.modules, "lm_eval", fake)
    result = run_lm_eval("/ckpt", tasks=["arc_easy"])
    assert calls == [{"model": "hf", "model_args": "pretrained=/ckpt", "tasks": ["arc_easy"]}]
    assert result["status"] == "ran" and result["results"] == {
        "arc_easy": {"acc,none": 0.25, "acc_stderr,none": "N/A"}
    }
    json.dumps(result)
