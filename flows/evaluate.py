"""The evaluate flow: base and tuned policies sample the held-out prompts; the judge scores
both (PipelineConfig.judges: a scorer that did not build the pairs when one is configured), and
so does every other configured scorer, for the report's win rate by scorer
(prefsmith.evaluation.judges). Held-out pairs from the base samples measure the tuned policy's
implicit-reward accuracy; the tuned samples give a KL(tuned ‖ reference) estimate; an optional
lm-eval hook runs; the compare stage writes the JSON, markdown and HTML reports. Each stage is
called by its registry name and labelled by side in the Prefect UI (`generate-base`,
`score-tuned`, `score-tuned-<scorer>`, ...).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from prefsmith.flows.tasks import run_stage
from prefsmith.schemas.eval_configs import CompareConfig, LmEvalConfig, PolicyReferenceConfig
from prefsmith.schemas.pipeline_config import EvalConfig, PipelineConfig, scorer_label


def sample_and_score(
    config: PipelineConfig, *, model: str, heldout: str, out_dir: Path, side: str
) -> dict[str, str]:
    """One policy's samples on the held-out prompts and their scores: {responses, scores (the
    judge's), scores:<name> (each scorer's, the judge's included)}."""
    ev: EvalConfig = config.evaluate
    generate = config.generate.model_copy(update={"model": model, "sampling": ev.sampling})
    iso = config.isolate_stages
    responses = run_stage(
        "generate",
        {"prompts": heldout},
        config=generate,
        out_dir=out_dir,
        isolate_stages=iso,
        label=f"generate-{side}",
    )
    inputs = {"responses": responses["output"], "prompts": heldout}
    tables = {"responses": responses["output"]}
    for rank, (name, scorer) in enumerate(config.judges()):
        folder = out_dir if rank == 0 else out_dir / "scorers" / name
        label = f"score-{side}" if rank == 0 else f"score-{side}-{name}"
        scores = run_stage(
            "score", inputs, config=scorer, out_dir=folder, isolate_stages=iso, label=label
        )
        tables[f"scores:{name}"] = scores["output"]
        tables.setdefault("scores", scores["output"])
    return tables


def measurements(
    config: PipelineConfig, *, checkpoint: str, heldout: str, sides: dict, out: Path
) -> dict[str, str]:
    """Held-out pair accuracy (base samples) and KL (tuned samples), as the evaluate section
    asks: the compare stage's optional inputs."""
    ev, iso = config.evaluate, config.isolate_stages
    base, tuned = sides["base"], sides["tuned"]
    against = PolicyReferenceConfig(policy=checkpoint, reference=config.reference_config())
    extra: dict[str, str] = {}
    if ev.heldout_pairs:
        inputs = {"scores": base["scores"], "responses": base["responses"], "prompts": heldout}
        pairs = run_stage(
            "pairs",
            inputs,
            config=config.pairs,
            out_dir=out / "heldout_pairs",
            isolate_stages=iso,
            label="heldout-pairs",
        )
        margins = run_stage(
            "heldout_accuracy",
            {"pairs": pairs["output"]},
            config=against,
            out_dir=out / "heldout_pairs",
            isolate_stages=iso,
        )
        extra["heldout"] = margins["output"]
    if ev.kl:
        inputs = {"responses": tuned["responses"], "prompts": heldout}
        kl = run_stage("kl", inputs, config=against, out_dir=out / "kl", isolate_stages=iso)
        extra["kl"] = kl["output"]
    return extra


def evaluation(
    config: PipelineConfig,
    checkpoint: str,
    heldout: str,
    run_dir: str,
    *,
    base_dir: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, str]:
    """Sample, score, measure and compare on the held-out prompts: {eval_report, tuned_responses,
    tuned_scores}. The base's samples go to `base_dir` (default `<run_dir>/eval/base`): rounds
    share one folder, so the base samples once and later rounds find its stages `Cached`.
    `labels` name the two sides in the report (default tuned, base)."""
    if config.evaluate is None:
        raise ValueError("evaluate needs the pipeline's `evaluate` section")  # the caller checks
    ev, out, iso = config.evaluate, Path(run_dir) / "eval", config.isolate_stages
    folders = {"base": Path(base_dir) if base_dir else out / "base", "tuned": out / "tuned"}
    sides = {
        side: sample_and_score(
            config, model=model, heldout=heldout, out_dir=folders[side], side=side
        )
        for side, model in (("base", config.generate.model), ("tuned", checkpoint))
    }
    extra = measurements(config, checkpoint=checkpoint, heldout=heldout, sides=sides, out=out)
    hook = LmEvalConfig(checkpoint=checkpoint, tasks=ev.lm_eval_tasks)
    lm_eval = run_stage("lm_eval", {}, config=hook, out_dir=out / "lm_eval", isolate_stages=iso)
    more = {**extra, "lm_eval": lm_eval["output"]}
    report = compare_sides(config, sides, out_dir=out, extra=more, heldout=heldout, labels=labels)
    tuned = {f"tuned_{kind}": path for kind, path in sides["tuned"].items()}
    return {"eval_report": report, **tuned}


def compare_sides(
    config: PipelineConfig,
    sides: dict[str, dict[str, str]],
    *,
    out_dir: Path,
    heldout: str,
    extra: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """The compare stage on two sides' {responses, scores}; returns eval_report.json's path."""
    ev = config.evaluate
    tables = {f"{side}_{kind}": path for side, t in sides.items() for kind, path in t.items()}
    compare = CompareConfig(
        n_boot=ev.n_boot,
        seed=ev.seed,
        judge=config.judges()[0][0],
        judge_is_training_scorer=config.judged_by_training_scorer(),
        training_scorers=[scorer_label(s) for s in config.training_scorer_configs()],
        **({"labels": labels} if labels else {}),
    )
    report = run_stage(
        "compare", {**tables, **(extra or {}), "prompts": heldout}, config=compare, out_dir=out_dir
    )
    return report["output"]


@flow(name="evaluate")
def evaluate(config: PipelineConfig, checkpoint: str, heldout: str, run_dir: str) -> str:
    """Sample, score, measure and compare on the held-out prompts; returns eval_report.json."""
    return evaluation(config, checkpoint, heldout, run_dir)["eval_report"]
