"""`train` warns, in one prefsmith line, when its settings cannot move the loss: the README's
default (lr 5e-7 on the tiny policy for one epoch of the ~400 README pairs) is flagged; the
quickstart's working lr, and a full-size model at the same default lr, are not."""

from __future__ import annotations

import json
import logging

import pytest

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.train_configs import TrainConfig
from prefsmith.training.guards import planned_steps, stuck_loss_warning
from prefsmith.training.stage import train

DEFAULTS = TrainConfig.model_fields


def tiny_hidden(tiny) -> int:
    return json.loads((tiny.policy / "config.json").read_text())["hidden_size"]


def default_warning(*, hidden_size: int, n_pairs: int, **overrides):
    """stuck_loss_warning for TrainConfig's defaults (what `train` without -c runs)."""
    values = {name: DEFAULTS[name].default for name in DEFAULTS if name != "policy"}
    values.update(overrides)
    steps = planned_steps(
        max_steps=values["max_steps"],
        epochs=values["num_train_epochs"],
        n_pairs=n_pairs,
        global_batch=values["per_device_train_batch_size"],
    )
    return stuck_loss_warning(
        learning_rate=values["learning_rate"],
        steps=steps,
        warmup_ratio=values["warmup_ratio"],
        scheduler=values["lr_scheduler_type"],
        hidden_size=hidden_size,
    )


def test_the_readme_default_is_flagged_with_a_fix(tiny):
    # the README's stage commands pair the 403 bundled prompts: at most 403 pairs, one epoch
    line = default_warning(hidden_size=tiny_hidden(tiny), n_pairs=403)
    assert line is not None and "\n" not in line
    assert "learning_rate 5e-07" in line and "raise learning_rate" in line


def test_a_working_learning_rate_is_not_flagged(tiny):
    # the quickstart's settings: lr 1e-3, 60 steps, no warmup (they train: win rate ~80%)
    line = default_warning(
        hidden_size=tiny_hidden(tiny),
        n_pairs=403,
        learning_rate=1e-3,
        max_steps=60,
        warmup_ratio=0.0,
    )
    assert line is None


def test_the_default_lr_on_a_full_size_model_is_not_flagged():
    # a 7B-like model (hidden 4096), one epoch of 60k pairs at batch 32: the usual DPO recipe
    assert default_warning(hidden_size=4096, n_pairs=60_000, per_device_train_batch_size=32) is None


def test_planned_steps_follow_the_trainer():
    assert planned_steps(max_steps=7, epochs=3.0, n_pairs=100, global_batch=8) == 7
    assert planned_steps(max_steps=-1, epochs=2.0, n_pairs=17, global_batch=8) == 6  # 3 per epoch


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize(("learning_rate", "warned"), [(5e-7, True), (1e-2, False)])
def test_the_train_stage_warns_once_for_a_stuck_setting(
    tiny, pairs_file, tmp_path, learning_rate, warned
):
    """The real stage on the tiny policy (a reference-free loss, two steps)."""
    config = parse_config(
        TrainConfig,
        {
            "policy": str(tiny.policy),
            "loss": [{"name": "simpo", "params": {"beta": 2.0}}],
            "learning_rate": learning_rate,
            "max_steps": 2,
            "max_length": 128,
            "max_prompt_length": 64,
            "save_steps": 0,
        },
    )
    lines = Lines()
    guard_logger = logging.getLogger("prefsmith.training.guards")
    guard_logger.addHandler(lines)
    try:
        train({"pairs": pairs_file}, config=config, out_dir=tmp_path / "run")
    finally:
        guard_logger.removeHandler(lines)
    stuck = [line for line in lines.lines if "can hardly move the loss" in line]
    assert len(stuck) == (1 if warned else 0), lines.lines
