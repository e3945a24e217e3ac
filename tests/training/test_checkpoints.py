"""Which checkpoint a resumed train continues from: never a torn one, never past its plan."""

from __future__ import annotations

import json

from prefsmith.schemas.train_configs import TrainConfig
from prefsmith.training.checkpoints import is_finished, last_complete_checkpoint, resume_checkpoint


def _checkpoint(folder, step, *, state=True, max_steps=9, epochs=1):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state is True:
        state = json.dumps(
            {"global_step": step, "max_steps": max_steps, "num_train_epochs": epochs}
        )
    if state:
        (path / "trainer_state.json").write_text(state)
    return path


def test_the_newest_complete_checkpoint_and_torn_ones_removed(tmp_path):
    folder = tmp_path / "checkpoints"
    three = _checkpoint(folder, 3)
    _checkpoint(folder, 10)  # numeric order, not text order: 10 > 3
    torn = _checkpoint(folder, 12, state='{"global_st')  # killed while HF wrote its state
    empty = _checkpoint(folder, 15, state=None)  # killed before the state was written
    assert last_complete_checkpoint(folder) == folder / "checkpoint-10"
    assert not torn.exists() and not empty.exists() and three.exists()


def test_resume_true_picks_it_and_none_without_checkpoints(tmp_path):
    config = TrainConfig(policy="p", resume=True)
    assert resume_checkpoint(config, out_dir=tmp_path) is None
    _checkpoint(tmp_path / "checkpoints", 6, state=None)
    assert resume_checkpoint(config, out_dir=tmp_path) is None  # only a torn one: start over
    _checkpoint(tmp_path / "checkpoints", 3)
    assert resume_checkpoint(config, out_dir=tmp_path) == tmp_path / "checkpoints" / "checkpoint-3"
    assert resume_checkpoint(TrainConfig(policy="p"), out_dir=tmp_path) is None  # resume: false


def test_finished_against_this_runs_plan(tmp_path):
    at_nine = _checkpoint(tmp_path, 9, max_steps=9)
    assert is_finished(at_nine, config=TrainConfig(policy="p", max_steps=9))
    assert not is_finished(at_nine, config=TrainConfig(policy="p", max_steps=12))  # plan grew
    by_epochs = _checkpoint(tmp_path / "e", 4, max_steps=4, epochs=2)
    assert is_finished(by_epochs, config=TrainConfig(policy="p", num_train_epochs=2.0))
    assert not is_finished(by_epochs, config=TrainConfig(policy="p", num_train_epochs=3.0))
    assert not is_finished(None, config=TrainConfig(policy="p", max_steps=9))
