"""The train stage (`prefsmith train`): pairs table + TrainConfig → a checkpoint folder.

Output in `out_dir`:

| path                          | what                                                           |
|-------------------------------|----------------------------------------------------------------|
| final/                        | safetensors weights + tokenizer + `prefsmith_train.json`        |
| final.manifest.json           | manifest (unit "pair": pairs in, pairs trained, dropped by reason) |
| final.quarantine.parquet      | pairs not trained on, with reasons                              |
| checkpoints/checkpoint-N/     | HF Trainer checkpoints (resume from the last with `resume: true`) |

Quarantine reasons: template_error, prompt_too_long, empty_completion (rendering),
identical_pair, invalid_weight (a `weight` that is missing, non-finite or negative),
missing_reference, missing_score (a loss reads a value the row lacks).

Launchers (torchrun, `deepspeed`) run `python -m prefsmith.training.stage --pairs P --config C.yaml --out D`
on every rank (`prefsmith.training.launch.launch_train` builds that command from `TrainConfig.launch`).
Every rank reads and renders the pairs (checked equal across ranks), the global batch is
per_device_train_batch_size x gradient_accumulation_steps x world size, and only global rank 0
writes `final/`, the manifest and the quarantine (see `prefsmith.training.ranks`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefsmith.schemas.config_base import load_config
from prefsmith.schemas.errors import InputError, PrefsmithError
from prefsmith.schemas.ids import content_hash, model_file_hashes
from prefsmith.schemas.io import remove_stale_temporaries
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    count_reasons,
    input_path,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.quarantine import Rejected, write_quarantine
from prefsmith.schemas.train_configs import TrainConfig
from prefsmith.training.adapters import add_base_reference, base_is_reference
from prefsmith.training.checkpoints import is_finished, restore_finished, resume_checkpoint
from prefsmith.training.guards import warn_if_loss_cannot_move
from prefsmith.training.pair_examples import build_examples, read_pairs
from prefsmith.training.policy import load_policy, pad_token_id

logger = logging.getLogger(__name__)

DEEPSPEED_DIR = Path(__file__).resolve().parent / "deepspeed"
FINAL = "final"
SUMMARY = "prefsmith_train.json"


def deepspeed_config(value: str | None) -> str | None:
    """Path of a shipped preset ('zero2', 'zero3') or the user's JSON file."""
    if value in ("zero2", "zero3"):
        return str(DEEPSPEED_DIR / f"{value}.json")
    return value


def training_arguments(config: TrainConfig, *, out_dir: Path):
    """HF TrainingArguments from the config (checkpoints under out_dir/checkpoints)."""
    import torch
    from transformers import TrainingArguments

    from prefsmith.training.ranks import cpu_process_group

    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs,
        seed=config.seed,
        logging_steps=config.logging_steps,
        report_to=config.report_to,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        deepspeed=deepspeed_config(config.deepspeed),
        bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        remove_unused_columns=False,  # the collator needs the pair-level columns
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        length_column_name="length",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning warns and does nothing on CPU
        **cpu_process_group(deepspeed=config.deepspeed is not None),  # several CPU ranks: one job
    )


def pair_layout(config: TrainConfig, model) -> str:
    """The configured layout, or `concatenated` where the attention cannot take a 4D mask."""
    attention = getattr(model.config, "_attn_implementation", None)
    if config.pair_layout != "concatenated" and attention not in ("sdpa", "eager"):
        logger.warning(
            "pair_layout %s needs sdpa or eager attention, the model uses %r: using concatenated",
            config.pair_layout,
            attention,
        )
        return "concatenated"
    return config.pair_layout


def make_trainer(model, tokenizer, dataset, *, config: TrainConfig, args):
    """A PreferenceTrainer over `dataset` with the config's loss terms."""
    from prefsmith.training.collate import PairCollator
    from prefsmith.training.trainer import PreferenceTrainer

    collator = PairCollator(
        pad_token_id=pad_token_id(tokenizer),
        layout=pair_layout(config, model),
        pack_tokens=config.pack_tokens,
    )
    return PreferenceTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=collator,
        loss_terms=config.terms(),
        nll_weight=config.nll_weight,
        logprob_chunk_tokens=config.logprob_chunk_tokens,
    )


def _save_final(
    trainer, tokenizer, *, config: TrainConfig, final: Path, metrics: dict, global_batch: int
) -> None:
    """Every rank calls save_model (ZeRO-3 gathers shards from all); rank 0 writes the files.
    With an adapter, `final/` holds the adapter, and the base's generation config (its
    end-of-turn ids) is copied beside it."""
    trainer.save_model(str(final))  # safetensors (the adapter alone under peft)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final))
        if config.adapter is not None:
            _save_adapter_extras(config, final)
        history = trainer.state.log_history
        logged = [e for e in history if "loss" in e]
        summary = {
            "config": config.model_dump(mode="json"),
            "metrics": metrics,
            "global_step": trainer.state.global_step,
            "last_log": logged[-1] if logged else {},
            "world_size": trainer.args.world_size,
            "global_batch": global_batch,
            "loss_curve": [[e["step"], e["loss"]] for e in logged],  # mean over all ranks
            "log_history": history,
        }
        (final / SUMMARY).write_text(json.dumps(summary, indent=2, default=float))


def _save_adapter_extras(config: TrainConfig, final: Path) -> None:
    import shutil

    from prefsmith.generation.checkpoints import merged_folder

    generation_config = Path(config.policy) / "generation_config.json"
    if generation_config.is_file():
        shutil.copyfile(generation_config, final / generation_config.name)
    if config.adapter.save_merged:
        merged_folder(final, trust_remote_code=config.trust_remote_code)


def _write_records(
    rows,
    *,
    config: TrainConfig,
    pairs: Path,
    final: Path,
    n_trained: int,
    rejected: list[Rejected],
    extra: dict,
    start: float,
) -> None:
    """Rank 0: the quarantine beside `final/` and the manifest (pairs in = trained + dropped)."""
    quarantine = final.parent / "final.quarantine.parquet"
    write_quarantine(rejected, quarantine, stage="train")
    manifest = Manifest(
        stage="train",
        unit="pair",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(pairs)],
        outputs={"checkpoint": str(final), "quarantine": str(quarantine)},
        rows_in=len(rows),
        rows_out=n_trained,
        dropped=count_reasons([r.reason for r in rejected]),
        rows_written={"quarantine": len(rejected)},
        extra=extra,
        wall_time_s=time.perf_counter() - start,
    )
    manifest.write(manifest_path(final))


def finished_run(pairs: Path, *, config: TrainConfig, out_dir: Path) -> StageResult | None:
    """The result already in `out_dir` when `final/` is this run finished, else None.

    Finished: the manifest beside `final/` records this config (`resume` aside) on these pairs,
    the planned step count, and hashes of the model files that `final/` still has. Stepping a
    finished run again would take one step more and re-save `final/` (a new model).
    """
    final = out_dir / FINAL
    try:
        manifest = Manifest.read(manifest_path(final))
    except (OSError, ValueError):  # no manifest, or a torn one: not finished
        return None
    extra, wanted = manifest.extra, config.model_dump(mode="json")
    planned = config.max_steps if config.max_steps > 0 else extra.get("max_steps")
    same = {**manifest.config, "resume": None} == {**wanted, "resume": None} and [
        ref.sha256 for ref in manifest.inputs
    ] == [input_ref(pairs).sha256]
    if not same or "model_files" not in extra or extra.get("global_step") != planned:
        return None
    if not final.is_dir() or model_file_hashes(final) != extra["model_files"]:
        logger.warning("train: %s differs from its manifest; training again", final)
        return None
    logger.info("train: final/ is complete (step %d), reused", planned)
    return StageResult(final, out_dir / "final.quarantine.parquet", manifest_path(final))


def train(inputs: Inputs, *, config: TrainConfig, out_dir: str | Path) -> StageResult:
    """Train the policy on `inputs["pairs"]`; write the final checkpoint, quarantine, manifest.
    A run already finished in `out_dir` (finished_run) is returned as is: no model is loaded."""
    import datasets

    from prefsmith.training.ranks import check_same_examples, log_global_batch

    start = time.perf_counter()
    pairs, out_dir = input_path(inputs, "pairs"), Path(out_dir)
    # A run killed while writing final/'s records left their temporaries (the caller holds the
    # folder's train lock, so none is a live writer's).
    remove_stale_temporaries(out_dir, prefix="final")
    if (done := finished_run(pairs, config=config, out_dir=out_dir)) is not None:
        return done
    rows, has_reference = read_pairs(pairs, config=config)
    args = training_arguments(config, out_dir=out_dir)  # first: lets ZeRO-3 partition at load
    global_batch = log_global_batch(args.world_size, config=config)
    base_reference = base_is_reference(config, pairs=pairs, has_reference=has_reference)
    tokenizer, model = load_policy(config)
    examples, rejected = build_examples(
        rows, tokenizer=tokenizer, config=config, pairs=pairs, has_reference=has_reference
    )
    check_same_examples(rows, lengths=[e["length"] for e in examples])
    if not examples:
        raise InputError(
            f"{pairs}: no pair left to train on ({count_reasons([r.reason for r in rejected])})"
        )
    reference = "pairs table" if has_reference else "none"
    if base_reference:
        budget = config.adapter.reference_token_budget
        add_base_reference(model, examples, pad_id=pad_token_id(tokenizer), token_budget=budget)
        reference = "base, adapter disabled"
    trainer = make_trainer(
        model, tokenizer, datasets.Dataset.from_list(examples), config=config, args=args
    )
    warn_if_loss_cannot_move(config, model=model, n_pairs=len(examples), global_batch=global_batch)
    run = TrainedRun(trainer, _train_or_restore(trainer, config, out_dir), global_batch, reference)
    return _finish(
        run,
        tokenizer,
        rows,
        config=config,
        pairs=pairs,
        out_dir=out_dir,
        n_trained=len(examples),
        rejected=rejected,
        start=start,
    )


def _train_or_restore(trainer, config: TrainConfig, out_dir: Path) -> dict[str, Any]:
    """Train (resuming where asked), or load a checkpoint that already holds every step: HF
    would take one step more from it. Under DeepSpeed the engine restores inside `train`."""
    resume = resume_checkpoint(config, out_dir=out_dir)
    if is_finished(resume, config=config) and not trainer.is_deepspeed_enabled:
        return restore_finished(trainer, resume)
    resume_from = str(resume) if resume is not None else None
    return trainer.train(resume_from_checkpoint=resume_from).metrics


@dataclass(frozen=True)
class TrainedRun:
    trainer: Any
    metrics: dict[str, Any]
    global_batch: int
    reference: str  # where the reference log-probs came from: pairs table, base, none


def _finish(
    run: TrainedRun,
    tokenizer,
    rows,
    *,
    config: TrainConfig,
    pairs: Path,
    out_dir: Path,
    n_trained: int,
    rejected,
    start: float,
) -> StageResult:
    """Save `final/` and, on rank 0, its quarantine and manifest; every rank waits for rank 0."""
    from prefsmith.training.ranks import wait_for_all

    final, trainer = out_dir / FINAL, run.trainer
    _save_final(
        trainer,
        tokenizer,
        config=config,
        final=final,
        metrics=run.metrics,
        global_batch=run.global_batch,
    )
    if trainer.is_world_process_zero():
        files = model_file_hashes(final)  # what finished_run checks
        extra = {
            "global_step": trainer.state.global_step,
            "max_steps": trainer.state.max_steps,  # planned: max_steps or epochs x batches
            "model_files": files,
            "model_revision": content_hash(sorted(files.items())),  # = model_revision(final)
            "metrics": run.metrics,
            "world_size": trainer.args.world_size,
            "global_batch": run.global_batch,
            "reference": run.reference,
        }
        _write_records(
            rows,
            config=config,
            pairs=pairs,
            final=final,
            n_trained=n_trained,
            rejected=rejected,
            extra=extra,
            start=start,
        )
    wait_for_all()  # no rank returns before rank 0 has written the outputs
    return StageResult(final, out_dir / "final.quarantine.parquet", manifest_path(final))


def main(argv: list[str] | None = None) -> int:
    """`python -m prefsmith.training.stage --pairs P --config C.yaml --out D [--section train]`."""
    parser = argparse.ArgumentParser(
        prog="python -m prefsmith.training.stage", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--pairs", required=True, type=Path, help="pairs table (Parquet file or folder)"
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML with the TrainConfig keys")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--section", default="", help="top-level YAML key holding the config")
    parser.add_argument(
        "--local_rank", type=int, default=None, help=argparse.SUPPRESS
    )  # deepspeed launcher
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = train(
            {"pairs": options.pairs},
            config=load_config(TrainConfig, options.config, section=options.section),
            out_dir=options.out,
        )
    except PrefsmithError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
