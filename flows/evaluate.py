"""The evaluate flow: base and tuned policies sample the held-out prompts, one scorer scores
both; held-out pairs from the base samples measure the tuned policy's implicit-reward accuracy;
the tuned samples give a KL(tuned ‖ reference) estimate; an optional lm-eval hook runs; the
comparison stage writes the JSON, markdown and HTML reports.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from prefsmith.flows.tasks import isolate_scorer, run_stage
from prefsmith.schemas.data_configs import GenerateConfig
from prefsmith.schemas.pipeline_config import PipelineConfig
from prefsmith.schemas.train_configs import ReferenceConfig


def reference_config(config: PipelineConfig) -> ReferenceConfig:
    """The model the tuned policy was trained against (as in the pipeline's reference pass)."""
    if config.reference is not None:
        return config.reference
    return ReferenceConfig(model=config.train.policy if config.train else config.generate.model)


@flow(name="evaluate")
def evaluate(config: PipelineConfig, checkpoint: str, heldout: str, run_dir: str) -> str:
    """Sample, score, measure and compare on the held-out prompts; returns eval_report.json's path."""
    assert config.evaluate is not None  # the caller checks
    out, iso, ev = Path(run_dir) / "eval", config.isolate_stages, config.evaluate
    scorer, reference = ev.scorer or config.score, reference_config(config)
    sides = {}
    for side, model in (("base", config.generate.model), ("tuned", checkpoint)):
        gen: GenerateConfig = config.generate.model_copy(
            update={"model": model, "sampling": ev.sampling}
        )
        responses = run_stage(
            f"generate-{side}",
            "prefsmith.generation.stage:generate",
            Path(heldout),
            config=gen,
            out_dir=out / side,
            isolated=iso,
        )
        scores = run_stage(
            f"score-{side}",
            "prefsmith.scoring.stage:score",
            Path(responses["output"]),
            prompts=Path(heldout),
            config=scorer,
            out_dir=out / side,
            isolated=isolate_scorer(scorer, isolate_stages=iso),
        )
        sides[side] = (Path(scores["output"]), Path(responses["output"]))
    extra: dict[str, Path] = {}
    if ev.heldout_pairs:
        pairs = run_stage(
            "heldout-pairs",
            "prefsmith.curation.pairs:build_pairs",
            sides["base"][0],
            responses=sides["base"][1],
            prompts=Path(heldout),
            config=config.pairs,
            out_dir=out / "heldout_pairs",
        )
        margins = run_stage(
            "heldout-accuracy",
            "prefsmith.evaluation.preference_accuracy:heldout_accuracy",
            Path(pairs["output"]),
            reference=reference,
            policy=checkpoint,
            out_dir=out / "heldout_pairs",
            isolated=iso,
        )
        extra["heldout"] = Path(margins["output"])
    if ev.kl:
        kl = run_stage(
            "kl",
            "prefsmith.evaluation.kl:kl_estimate",
            sides["tuned"][1],
            prompts=Path(heldout),
            policy=checkpoint,
            reference=reference,
            out_dir=out / "kl",
            isolated=iso,
        )
        extra["kl"] = Path(kl["output"])
    hook = run_stage(
        "lm-eval",
        "prefsmith.evaluation.lm_eval_hook:lm_eval_stage",
        checkpoint,
        tasks=ev.lm_eval_tasks,
        out_dir=out / "lm_eval",
        isolated=iso and bool(ev.lm_eval_tasks),
    )
    report = run_stage(
        "compare",
        "prefsmith.evaluation.compare:compare_policies",
        sides["tuned"][0],
        tuned_responses=sides["tuned"][1],
        base_scores=sides["base"][0],
        base_responses=sides["base"][1],
        out_dir=out,
        n_boot=ev.n_boot,
        seed=ev.seed,
        lm_eval=Path(hook["output"]),
        **extra,
    )
    return report["output"]
