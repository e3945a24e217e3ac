"""The evaluate flow: base and tuned policies sample the held-out prompts, one scorer scores
both, and the comparison stage reports win rate, length-controlled win rate and mean rewards.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.tasks import run_stage
from schemas.data_configs import GenerateConfig
from schemas.pipeline_config import PipelineConfig


@flow(name="evaluate")
def evaluate(config: PipelineConfig, checkpoint: str, heldout: str, run_dir: str) -> str:
    """Base and tuned policies sample the held-out prompts; one scorer scores both; compare."""
    assert config.evaluate is not None  # the caller checks
    out, iso, ev = Path(run_dir) / "eval", config.isolate_stages, config.evaluate
    scorer = ev.scorer or config.score
    sides = {}
    for side, model in (("base", config.generate.model), ("tuned", checkpoint)):
        gen: GenerateConfig = config.generate.model_copy(update={"model": model, "sampling": ev.sampling})
        responses = run_stage(f"generate-{side}", "generation.stage:generate", Path(heldout),
                              config=gen, out_dir=out / side, isolated=iso)  # fmt: skip
        scores = run_stage(f"score-{side}", "scoring.stage:score", Path(responses["output"]),
                           prompts=Path(heldout), config=scorer, out_dir=out / side, isolated=iso)  # fmt: skip
        sides[side] = (Path(scores["output"]), Path(responses["output"]))
    report = run_stage("compare", "evaluation.compare:compare_policies", sides["tuned"][0],
                       tuned_responses=sides["tuned"][1], base_scores=sides["base"][0],
                       base_responses=sides["base"][1], out_dir=out, n_boot=ev.n_boot, seed=ev.seed)  # fmt: skip
    return report["output"]
