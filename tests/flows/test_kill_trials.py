"""Kill trials (issue 13): `prefsmith generate`, `score`, `reference`, `train` and `run` (the
whole pipeline, training and evaluation included) are SIGKILLed, process group and all, at
moments drawn from fixed seeds, then run again into the same folder; what the rerun leaves must
equal an uninterrupted run of the same command.

Equal means: tables sorted by id with every value equal, floats included (each rerun computes a
row with the same batch and the same seed as the uninterrupted run, so no tolerance is allowed
anywhere); checkpoint weights byte-equal, the trainer's global step equal to the planned one (no
step trained twice); the evaluation report's numbers equal; no temporary file left behind.

Each command's uninterrupted run is done once per session and timed; a trial's kill moment is
`anchor + u * window` (tests/kill_trial.py), the anchor being the stage's first output (so the
kill lands in its work, not in its start-up). Commands run in a warm launcher (tests/warm_cli.py):
the real Typer app in a fresh forked process with the imports already done. Two trials per stage
and two for the pipeline: one at a random moment of the whole run, one after training has
finished (during evaluation). Four more are aimed rather than drawn (WRITE_MOMENTS): score
killed while a temporary file exists; train while HF fills a checkpoint folder, just after its
first checkpoint (a resume inside the second epoch), and while `final/` is saved. A run that
exits before its kill moment is a harness miss, retried once with the moment halved, never
counted as a pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kill_oracle import same_build, same_checkpoint, same_pairs_ref, same_responses, same_scores
from kill_trial import (
    Outcome,
    draw_fraction,
    drive,
    leftover_temporaries,
    table_difference,
)
from warm_cli import WarmCli

from prefsmith.schemas.io import read_table
from prefsmith.schemas.tables import PAIRS

pytestmark = pytest.mark.slow

SEEDS = ("1", "2")
N_PROMPTS = 8
MAX_STEPS, SAVE_STEPS = 9, 3
PIPELINE_STEPS = 6
STATE = "trainer_state.json"  # the last file HF writes into a checkpoint


def stage_config(tiny) -> dict:
    """Each section is the smallest that still has several shards / checkpoints to interrupt."""
    return {
        "generate": {
            "model": str(tiny.policy),
            "backend": "transformers",
            "dtype": "float32",
            "max_model_len": 128,
            "shard_size": 2,
            "batch_size": 4,
            "sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 8, "seed": 3},
        },
        "score": {"kind": "reward_model", "model": str(tiny.reward_model), "shard_size": 2},
        "pairs": {"strategy": "best_vs_worst", "min_margin": 0.0},
        "reference": {"model": str(tiny.policy), "max_length": 96, "max_prompt_length": 48},
        "train": train_config(tiny),
    }


def train_config(tiny) -> dict:
    return {
        "policy": str(tiny.policy),
        "max_length": 96,
        "max_prompt_length": 48,
        "per_device_train_batch_size": 4,
        "warmup_ratio": 0.0,
        "learning_rate": 1e-3,
        "logging_steps": 3,
        "max_steps": MAX_STEPS,
        "save_steps": SAVE_STEPS,
        "resume": True,
    }


@dataclass(frozen=True)
class Chain:
    """The inputs every stage trial reads, and the uninterrupted run of each stage."""

    root: Path
    config: Path
    prompts: Path
    clean: dict[str, Outcome]

    @property
    def out(self) -> Path:
        return self.root / "out"


@dataclass(frozen=True)
class Spec:
    """One stage under trial: its command (given the chain and its output folder), the folder
    it writes in a trial root, the path whose appearance anchors the kill moments, and the
    comparison of a rerun's output with the uninterrupted one (a list of differences)."""

    argv: Callable[[Chain, Path], list[str]]
    out: Callable[[Path], Path]
    anchor: str | None
    compare: Callable[[Path, Path], list[str]]


STAGES = {
    "generate": Spec(
        argv=lambda c, out: ["generate", str(c.prompts), "-o", str(out), "-c", str(c.config)],
        out=lambda root: root / "out",
        anchor="responses",
        compare=same_responses,
    ),
    "score": Spec(
        argv=lambda c, out: [
            *("score", str(c.out / "responses"), "--prompts", str(c.prompts)),
            *("-o", str(out), "-c", str(c.config)),
        ],
        out=lambda root: root / "out",
        anchor="scores",
        compare=same_scores,
    ),
    "reference": Spec(  # one output written at the end: the anchor is the start
        argv=lambda c, out: [
            *("reference", str(c.out / "pairs.parquet"), "-o", str(out), "-c", str(c.config))
        ],
        out=lambda root: root / "out",
        anchor=None,
        compare=same_pairs_ref,
    ),
    "train": Spec(  # anchored at the first checkpoint: every kill leaves one to resume from
        argv=lambda c, out: [
            *("train", str(c.out / "pairs_ref.parquet"), "-o", str(out), "-c", str(c.config))
        ],
        out=lambda root: root / "out" / "ckpt",
        anchor=f"checkpoints/checkpoint-{SAVE_STEPS}",
        compare=lambda got, want: same_checkpoint(got, want, steps=MAX_STEPS),
    ),
}


@pytest.fixture(scope="session")
def warm(prefect_server, tmp_path_factory):
    """The warm launcher, with the Prefect server's environment (read by Prefect at import)."""
    cli = WarmCli(env=prefect_server, log=tmp_path_factory.mktemp("warm") / "launcher.log")
    yield cli
    cli.close()


def run_to_end(warm: WarmCli, argv: list[str], *, log: Path, watch: Path, **marks) -> Outcome:
    outcome = drive(warm.start(argv, log=log), watch=watch, marks=marks)
    assert outcome.rc == 0, f"{' '.join(argv[:1])} failed:\n{log.read_text()[-3000:]}"
    return outcome


def anchor_marks(spec: Spec, out: Path) -> dict[str, Path]:
    return {} if spec.anchor is None else {"anchor": out / spec.anchor}


@pytest.fixture(scope="session")
def chain(warm, tiny, tmp_path_factory) -> Chain:
    """Prompts, then each stage run uninterrupted (timed) on the previous one's output."""
    from prefsmith.curation.pairs import build_pairs
    from prefsmith.generation.prompts import load_prompts
    from prefsmith.schemas.config_base import parse_config
    from prefsmith.schemas.data_configs import PairsConfig, PromptsConfig

    root = tmp_path_factory.mktemp("kill-chain")
    config = root / "stages.yaml"
    config.write_text(yaml.safe_dump(stage_config(tiny), sort_keys=False))
    texts = write_prompts(root / "prompts.jsonl", N_PROMPTS)
    prompts_config = parse_config(PromptsConfig, {"path": str(texts)})
    prompts = load_prompts({}, config=prompts_config, out_dir=root).output
    chain = Chain(root, config, prompts, {})
    for name, spec in STAGES.items():
        out = spec.out(root)
        chain.clean[name] = run_to_end(
            warm,
            spec.argv(chain, out),
            log=root / f"{name}.log",
            watch=out,
            **anchor_marks(spec, out),
        )
        print(f"uninterrupted {name}: {chain.clean[name]}")
        if name == "score":  # pairs: an instant stage, not under trial
            inputs = {
                "scores": chain.out / "scores",
                "responses": chain.out / "responses",
                "prompts": prompts,
            }
            pairs = parse_config(PairsConfig, stage_config(tiny)["pairs"])
            build_pairs(inputs, config=pairs, out_dir=chain.out)
    assert read_table(chain.out / "pairs.parquet", PAIRS).num_rows >= 6  # two batches at least
    return chain


@dataclass(frozen=True)
class Trial:
    """Where a trial ran, how its killed run and its rerun ended, and the temporary files the
    kill left (the rerun must not leave them)."""

    folder: Path
    killed: Outcome
    rerun: Outcome
    left_by_kill: list[Path]

    def line(self, name: str, seed: str, u: float, clean: Outcome) -> str:
        """One line per trial (printed; shown with -s or on a failure)."""
        killed = self.killed
        at = f"{killed.kill_s:.2f}s" if killed.killed else "never (it had exited)"
        marks = ", ".join(f"{k} at {v:.2f}s" for k, v in killed.marks.items())
        return (
            f"{name} seed {seed}: u={u:.2f}, killed at {at} ({marks or 'no mark'}; "
            f"uninterrupted {clean.total_s:.2f}s), {killed.files_at_kill} output files and "
            f"{len(self.left_by_kill)} temporaries then, rerun {self.rerun.total_s:.2f}s "
            f"({self.folder.name})"
        )


Command = Callable[[Path], tuple[list[str], Path, dict[str, Path]]]


def kill_then_rerun(
    warm: WarmCli, command: Command, *, root: Path, anchor: str | None, after_s: float
) -> Trial:
    """The trial: start `command(folder)` (argv, watched folder, marks), SIGKILL its group
    `after_s` after the anchor, then run it again to the end. A run that exits before its kill
    (the machine was faster than in the uninterrupted run) is a miss, not a trial: it is tried
    once more in a fresh folder with the moment halved."""
    for attempt in range(2):
        folder = root / f"attempt-{attempt}"
        argv, watch, marks = command(folder)
        folder.mkdir(parents=True)
        log = folder / "killed.log"
        killed = drive(
            warm.start(argv, log=log),
            watch=watch,
            marks=marks,
            anchor=anchor,
            kill_after_s=after_s * 0.5**attempt,
        )
        assert killed.killed or killed.rc == 0, f"failed on its own:\n{log.read_text()[-3000:]}"
        if killed.killed:
            break
    left = leftover_temporaries(folder)
    rerun = run_to_end(warm, argv, log=folder / "rerun.log", watch=watch)
    return Trial(folder, killed, rerun, left)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(STAGES))
def test_killed_stage_reruns_to_the_uninterrupted_result(name, seed, chain, warm, tmp_path):
    spec, clean = STAGES[name], chain.clean[name]
    u = draw_fraction(f"{name}-{seed}")
    anchor = None if spec.anchor is None else "anchor"

    def command(folder: Path):
        out = spec.out(folder)
        return spec.argv(chain, out), out, anchor_marks(spec, out)

    trial = kill_then_rerun(
        warm, command, root=tmp_path, anchor=anchor, after_s=u * clean.window(anchor)
    )
    check_stage_trial(trial, spec, chain, line=trial.line(name, seed, u, clean))


def check_stage_trial(trial: Trial, spec: Spec, chain: Chain, *, line: str) -> None:
    print(line)
    assert trial.killed.killed, f"harness race, not a kill: {line}"
    assert spec.compare(spec.out(trial.folder), spec.out(chain.root)) == [], line
    assert leftover_temporaries(trial.folder) == [], line


WRITE_MOMENTS = {  # case: (stage, marks in its output folder, seconds after "writing")
    "score-shard": (  # a shard's atomic write under way: its temporary file exists
        "score",
        lambda out: {"writing": lambda: any(out.glob("scores*/.*.tmp"))},
        0.0,
    ),
    "train-checkpoint": (  # HF has created the second checkpoint's folder and is filling it
        "train",
        lambda out: {"writing": out / "checkpoints" / f"checkpoint-{2 * SAVE_STEPS}"},
        0.0,
    ),
    "train-mid-epoch": (  # the first checkpoint complete (step 3: epoch 1, one batch in), then
        "train",  # training on: the rerun resumes from it, inside the second epoch
        lambda out: {"writing": out / "checkpoints" / f"checkpoint-{SAVE_STEPS}" / STATE},
        0.05,
    ),
    "train-final": (  # every step taken, final/ being saved, its manifest not yet written
        "train",
        lambda out: {"writing": out / "final" / "model.safetensors"},
        0.0,
    ),
}


@pytest.mark.parametrize("case", list(WRITE_MOMENTS))
def test_killed_mid_write_reruns_to_the_uninterrupted_result(case, chain, warm, tmp_path):
    """Not drawn but aimed: killed as soon as (or just after) a write is seen under way."""
    name, marks, after_s = WRITE_MOMENTS[case]
    spec = STAGES[name]

    def command(folder: Path):
        out = spec.out(folder)
        return spec.argv(chain, out), out, marks(out)

    trial = kill_then_rerun(warm, command, root=tmp_path, anchor="writing", after_s=after_s)
    line = trial.line(name, case, 0.0, chain.clean[name])
    check_stage_trial(trial, spec, chain, line=line)


# ---------------------------------------------------------------- the whole pipeline


def write_prompts(path: Path, n: int) -> Path:
    path.write_text(
        "".join(json.dumps({"prompt": f"count the thing {i}"}) + "\n" for i in range(n))
    )
    return path


@pytest.fixture(scope="session")
def pipeline_config(tiny, tmp_path_factory) -> Path:
    """Build, train and evaluate with the stage trials' sections; every stage in the flow's own
    process (`isolate_stages: false`: no per-stage start-up), so its group is that one process."""
    root = tmp_path_factory.mktemp("kill-pipeline")
    sections = stage_config(tiny)
    config = {
        "name": "killtrial",
        "out_dir": str(root / "runs"),
        "heldout_fraction": 0.25,
        "isolate_stages": False,
        "reuse": False,  # trials must recompute what they resume, not take it from the store
        "prompts": {"path": str(write_prompts(root / "prompts.jsonl", 8))},
        **{name: sections[name] for name in ("generate", "score", "pairs")},
        "train": {**sections["train"], "max_steps": PIPELINE_STEPS, "save_steps": 2},
        "evaluate": {"sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 8}, "n_boot": 100},
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def pipeline_marks(run: Path) -> dict[str, Path]:
    return {
        "trained": run / "checkpoint" / "final.manifest.json",
        "report": run / "eval" / "eval_report.json",
    }


@pytest.fixture(scope="session")
def clean_pipeline(warm, pipeline_config, tmp_path_factory) -> tuple[Path, Outcome]:
    root = tmp_path_factory.mktemp("kill-pipeline-clean")
    run = root / "run"
    argv = ["run", str(pipeline_config), "--run-dir", str(run)]
    return run, run_to_end(warm, argv, log=root / "run.log", watch=run, **pipeline_marks(run))


@pytest.mark.parametrize(
    "seed, anchor, until",
    [
        ("random", None, None),  # anywhere in the run
        ("evaluating", "trained", "report"),  # training finished, the report not yet written
    ],
)
def test_killed_pipeline_reruns_to_the_uninterrupted_build(
    seed, anchor, until, warm, pipeline_config, clean_pipeline, tmp_path
):
    want, clean = clean_pipeline
    u = draw_fraction(f"pipeline-{seed}")

    def command(folder: Path):
        run = folder / "run"
        return ["run", str(pipeline_config), "--run-dir", str(run)], run, pipeline_marks(run)

    trial = kill_then_rerun(
        warm, command, root=tmp_path, anchor=anchor, after_s=u * clean.window(anchor, until)
    )
    line, marks, run = (
        trial.line("pipeline", seed, u, clean),
        trial.killed.marks,
        trial.folder / "run",
    )
    print(line)
    assert trial.killed.killed, f"harness race, not a kill: {line}"
    if anchor is not None:  # the moment this trial is about: after training, before the report
        assert "trained" in marks and "report" not in marks, f"harness: {line}"
    assert same_build(run, want, steps=PIPELINE_STEPS) == [], line
    assert (trial.folder / "latest").resolve() == run.resolve()
    assert leftover_temporaries(trial.folder) == [], line


def test_the_comparisons_see_one_changed_value():
    """Negative control of the oracle: one float changed by 1e-12, one row missing."""
    import pyarrow as pa

    want = pa.table({"id": ["a", "b"], "x": [1.0, 2.0], "s": ["p", "q"]})
    nudged = pa.table({"id": ["b", "a"], "x": [2.0, 1.0 + 1e-12], "s": ["q", "p"]})
    assert table_difference(want.take([1, 0]), want, key="id") is None  # order does not matter
    assert table_difference(nudged, want, key="id") == "x: max |diff| 1e-12"
    assert "1 rows" in table_difference(want.slice(0, 1), want, key="id")
