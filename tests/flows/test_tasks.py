"""Task helpers: the stage cache key, the retry rule, pair-score quantiles."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefsmith.flows.artifacts import QUANTILES, pair_quantiles
from prefsmith.flows.tasks import StageInputs, retry_if_transient
from prefsmith.flows.tasks import stage_model_revision as model_revision
from prefsmith.schemas import errors
from prefsmith.schemas.data_configs import ScoreConfig, SplitConfig


def key(table, *, config, out_dir, name="score") -> str:
    inputs = {"name": name, "inputs": {"responses": table}, "config": config, "out_dir": out_dir}
    return StageInputs().compute_key(None, inputs, {})


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    return path


def test_key_follows_input_content_config_and_revision(table, tmp_path):
    config = ScoreConfig(kind="rule", rule="length_target", params={"target": 5})
    base = key(table, config=config, out_dir=tmp_path / "out")
    assert key(table, config=config, out_dir=tmp_path / "out") == base  # stable
    pq.write_table(pa.table({"x": [1, 2, 4]}), table)
    changed_input = key(table, config=config, out_dir=tmp_path / "out")
    assert changed_input != base
    other_config = config.model_copy(update={"params": {"target": 6}})
    assert key(table, config=other_config, out_dir=tmp_path / "out") != changed_input
    assert key(table, config=config, out_dir=tmp_path / "elsewhere") != changed_input
    pinned = config.model_copy(update={"revision": "v2"})
    assert key(table, config=pinned, out_dir=tmp_path / "out") != changed_input
    other_stage = key(table, config=config, out_dir=tmp_path / "out", name="generate")
    assert other_stage != changed_input


def test_model_revision_changes_when_the_model_folder_does(tmp_path):
    folder = tmp_path / "rm"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"1234")
    config = ScoreConfig(kind="reward_model", model=str(folder))
    before = model_revision(config)
    (folder / "model.safetensors").write_bytes(b"123456")
    assert model_revision(config) != before
    assert model_revision(config.model_copy(update={"revision": "abc"})) == "abc"


class _State:
    def __init__(self, exception: BaseException) -> None:
        self.exception = exception

    def result(self, *, raise_on_failure: bool) -> BaseException:
        return self.exception


@pytest.mark.parametrize(
    ("exception", "retried"),
    [
        (errors.StageProcessDied("killed (SIGKILL)"), True),
        (errors.ServerUnavailable("no server answered"), True),
        (ConnectionResetError("reset"), True),
        (OSError(5, "Input/output error"), True),
        (errors.StageError("loss is NaN"), False),
        (errors.ConfigError("bad key"), False),
        (errors.InputError("no file"), False),
        (FileNotFoundError("gone"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_transient_failures_retry(exception, retried):
    assert retry_if_transient(None, None, _State(exception)) is retried


def test_pair_quantiles_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(size=37) + 1.0, rng.normal(size=37)
    path = tmp_path / "pairs.parquet"
    pq.write_table(
        pa.table({"score_chosen": chosen, "score_rejected": rejected, "margin": chosen - rejected}),
        path,
    )
    rows = pair_quantiles(path)
    assert [r["quantile"] for r in rows] == list(QUANTILES)
    for column, values in (
        ("score_chosen", chosen),
        ("score_rejected", rejected),
        ("margin", chosen - rejected),
    ):
        expected = np.quantile(values, QUANTILES)  # linear interpolation, numpy's default
        assert [r[column] for r in rows] == pytest.approx(expected, abs=1e-6)


def test_pair_quantiles_of_no_pairs_are_empty(tmp_path):
    path = tmp_path / "pairs.parquet"
    pq.write_table(
        pa.table(
            {c: pa.array([], pa.float64()) for c in ("score_chosen", "score_rejected", "margin")}
        ),
        path,
    )
    assert all(r["margin"] is None for r in pair_quantiles(path))


class _Raises:
    """A registered stage's stand-in whose function raises a library's multi-line error."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def fn(self, inputs, *, config, out_dir):
        raise self.error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ValueError("Repo id must be in the form 'repo_name'\n  or 'namespace/repo_name'"),
            "Stage",
        ),
        (ConnectionResetError("peer reset\nthe connection"), "Transient"),
    ],
)
def test_in_process_library_error_is_one_line(monkeypatch, tmp_path, caplog, error, expected):
    """isolate_stages: false stops like a stage process does: one line of the same class, the
    traceback in the log (issue 12: an in-process model-load failure was a traceback, exit 1)."""
    from prefsmith.flows import tasks

    monkeypatch.setattr(tasks, "get_stage", lambda name: _Raises(error))
    with pytest.raises(errors.PrefsmithError) as raised:
        tasks.call_stage("train", {}, SplitConfig(), tmp_path, False)
    assert type(raised.value).__name__ == f"{expected}Error"
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(type(error).__name__ + ": ")
    assert any(record.exc_info for record in caplog.records)


def test_in_process_prefsmith_error_passes_unchanged(monkeypatch, tmp_path):
    from prefsmith.flows import tasks

    error = errors.ConfigError("train.policy: no such folder")
    monkeypatch.setattr(tasks, "get_stage", lambda name: _Raises(error))
    with pytest.raises(errors.ConfigError) as raised:
        tasks.call_stage("train", {}, SplitConfig(), tmp_path, False)
    assert raised.value is error
