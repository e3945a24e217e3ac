"""Optional hook: EleutherAI's lm-evaluation-harness on the tuned checkpoint.

lm-eval is not a dependency (its tasks download data sets); when the user names tasks and it is
importable, `lm_eval.simple_evaluate(model="hf", model_args="pretrained=<checkpoint>", tasks=...)`
runs and its per-task metrics are kept. When it is not installed the result says so plainly, and
the evaluation goes on. Output `lm_eval.json`:
{"status": "not_requested" | "not_installed" | "ran", "tasks": [...], "message": str, "results": {...}}.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from prefsmith.schemas.eval_configs import LmEvalConfig
from prefsmith.schemas.io import write_text
from prefsmith.schemas.manifest import Inputs, Manifest, StageResult, manifest_path

logger = logging.getLogger(__name__)

OUTPUT_NAME = "lm_eval.json"


def not_installed_message(tasks: list[str]) -> str:
    return f"lm-eval is not installed; skipped tasks: {', '.join(tasks)}"


def _plain(value: Any) -> Any:
    """JSON-safe numbers and strings only (lm-eval results hold numpy values and 'N/A')."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def run_lm_eval(checkpoint: str, *, tasks: list[str]) -> dict[str, Any]:
    """The hook's result dict (see the module docstring); runs lm-eval only if asked and present."""
    tasks = list(tasks)
    if not tasks:
        return {
            "status": "not_requested",
            "tasks": [],
            "message": "no lm-eval tasks requested",
            "results": {},
        }
    if importlib.util.find_spec("lm_eval") is None:
        logger.warning(not_installed_message(tasks))
        return {
            "status": "not_installed",
            "tasks": tasks,
            "message": not_installed_message(tasks),
            "results": {},
        }
    import lm_eval

    output = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={checkpoint}", tasks=tasks)
    results = _plain((output or {}).get("results", {}))
    return {
        "status": "ran",
        "tasks": tasks,
        "message": f"lm-eval ran {len(results)} task(s)",
        "results": results,
    }


def lm_eval_stage(_inputs: Inputs, *, config: LmEvalConfig, out_dir: str | Path) -> StageResult:
    """Run the hook on `config.checkpoint` (no input table) and write `lm_eval.json` with a
    manifest (unit: task; skipped tasks dropped)."""
    start = time.perf_counter()
    checkpoint, tasks = config.checkpoint, config.tasks
    result = run_lm_eval(str(checkpoint), tasks=tasks)
    output = Path(out_dir) / OUTPUT_NAME
    write_text(json.dumps(result, indent=2, sort_keys=True), output)  # atomic: whole or none
    ran = len(tasks) if result["status"] == "ran" else 0
    manifest = Manifest(
        stage="lm_eval",
        unit="task",
        config=config.model_dump(mode="json"),
        inputs=[],
        outputs={"lm_eval": str(output)},
        rows_in=len(tasks),
        rows_out=ran,
        dropped={"lm_eval_not_installed": len(tasks)}
        if result["status"] == "not_installed"
        else {},
        extra={"status": result["status"]},
        wall_time_s=time.perf_counter() - start,
    )
    return StageResult(output, None, manifest.write(manifest_path(output)))
