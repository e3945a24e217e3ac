"""`prefsmith validate` / `run` preflight: each miss is one exact line, exit code 2, before anything
runs. Real files throughout: the tiny models, prompts written here, configs through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prefsmith.flows.cli import app
from prefsmith.flows.preflight import model_folder_problems, tokenizer_vocab_size
from prefsmith.scoring.rules import RULES

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, tiny) -> dict:
    """A valid pipeline config: tiny policy, a rule scorer, prompts on disk."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "say five small words"}) + "\n")
    return {
        "name": "pre",
        "out_dir": str(tmp_path / "runs"),
        "prompts": {"path": str(prompts)},
        "generate": {"model": str(tiny.policy), "backend": "transformers"},
        "score": {"kind": "rule", "rule": "length_target", "params": {"target": 5}},
        "train": {"policy": str(tiny.policy), "max_length": 64, "max_prompt_length": 32},
    }


def validate(tmp_path: Path, data: dict, *args: str):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = runner.invoke(app, ["validate", str(path), *args])
    return result, [line for line in result.output.splitlines() if line.strip()]


def test_a_valid_config_is_ok(tmp_path, tiny):
    result, lines = validate(tmp_path, config(tmp_path, tiny))
    assert (result.exit_code, lines) == (0, [f"ok {tmp_path / 'pipeline.yaml'}"])


def _missing_prompts(data, tmp_path):
    data["prompts"]["path"] = str(tmp_path / "none.jsonl")
    return f"error: prompts.path: file not found: {tmp_path / 'none.jsonl'}"


def _missing_model(data, tmp_path):
    data["generate"]["model"] = str(tmp_path / "no-model")
    return (
        f"error: generate.model: model folder not found: {tmp_path / 'no-model'} "
        "(preflight checks local folders only)"
    )


def _unknown_rule(data, tmp_path):
    data["score"]["rule"] = "length_targt"
    known = ", ".join(sorted(RULES))
    return (
        "error: score.rule: unknown rule 'length_targt' (did you mean 'length_target'?); "
        f"known: {known}"
    )


def _unknown_rule_param(data, tmp_path):
    data["score"]["params"] = {"targt": 5}
    return (
        "error: score.params.targt: unknown parameter of rule 'length_target' "
        "(did you mean 'target'?); known: target"
    )


MISSES = [_missing_prompts, _missing_model, _unknown_rule, _unknown_rule_param]


@pytest.mark.parametrize("miss", MISSES, ids=lambda f: f.__name__.strip("_"))
def test_each_miss_is_one_exact_line_and_exit_2(tmp_path, tiny, miss):
    data = config(tmp_path, tiny)
    expected = miss(data, tmp_path)
    result, lines = validate(tmp_path, data)
    assert (result.exit_code, lines) == (2, [expected])


def test_every_problem_at_once_one_per_line_with_did_you_mean(tmp_path, tiny):
    data = config(tmp_path, tiny)
    expected_misses = [miss(data, tmp_path) for miss in MISSES[:3]]
    scorer = {"kind": "rule", "rule": "length_target", "params": {"targt": 5}}
    data["evaluate"] = {"scorer": scorer}  # score's rule is unknown: its params go unchecked
    data["trian"] = data.pop("train")
    data["generate"]["sampling"] = {"temprature": 0.7}
    data["pairs"] = {"min_margn": 0.1}
    result, lines = validate(tmp_path, data)
    assert result.exit_code == 2
    assert lines == [
        "error: generate.sampling.temprature: unknown key (did you mean 'temperature'?)",
        "error: pairs.min_margn: unknown key (did you mean 'min_margin'?)",
        "error: trian: unknown key (did you mean 'train'?)",
        *expected_misses,
        _unknown_rule_param({"score": {}}, tmp_path).replace("score.", "evaluate.scorer."),
    ]


def test_a_value_the_validator_names_is_not_repeated(tmp_path, tiny):
    data = config(tmp_path, tiny)
    data["train"]["deepspeed"] = "zero4"
    result, lines = validate(tmp_path, data)
    assert (result.exit_code, lines) == (
        2,
        [
            "error: train.deepspeed: Value error, must be 'zero2', 'zero3' or an existing .json "
            "file, got 'zero4'"
        ],
    )


def test_schema_only_skips_files_but_not_keys(tmp_path, tiny):
    data = config(tmp_path, tiny)
    _missing_prompts(data, tmp_path)
    result, lines = validate(tmp_path, data, "--schema-only")
    assert result.exit_code == 0
    data["pairs"] = {"min_margn": 0.1}
    result, lines = validate(tmp_path, data, "--schema-only")
    assert lines == ["error: pairs.min_margn: unknown key (did you mean 'min_margin'?)"]


def test_files_that_cannot_be_read_as_their_format(tmp_path, tiny):
    data = config(tmp_path, tiny)
    garbage = tmp_path / "prompts.parquet"
    garbage.write_bytes(b"not parquet at all")
    data["prompts"]["path"] = str(garbage)
    (tmp_path / "runs-file").write_text("")
    data["out_dir"] = str(tmp_path / "runs-file")
    result, lines = validate(tmp_path, data)
    runs = tmp_path / "runs-file"
    assert lines == [
        f"error: prompts.path: not a Parquet file (no PAR1 header and footer): {garbage}",
        f"error: out_dir: {runs} is a file, not a folder: outputs cannot go under {runs}",
    ]


def test_model_folder_without_config_or_weights(tiny):
    folder = tiny.tokenizer  # a tokenizer folder alone is not a model
    assert model_folder_problems(folder) == [
        f"{folder}: no readable config.json",
        f"{folder}: no weights (*.safetensors, *.bin or a sharded index)",
    ]


def test_tokenizer_larger_than_the_model_vocabulary(tmp_path, tiny):
    """The tiny tokenizer has 384 ids; a config.json declaring 100 belongs to another model."""
    folder = tmp_path / "mismatch"
    folder.mkdir()
    shutil.copy(tiny.policy / "tokenizer.json", folder / "tokenizer.json")
    (folder / "model.safetensors").write_bytes(b"")  # never opened: preflight loads no weights
    (folder / "config.json").write_text(json.dumps({"vocab_size": 100}))
    assert tokenizer_vocab_size(tiny.policy) == 384
    assert json.loads((tiny.policy / "config.json").read_text())["vocab_size"] >= 384
    assert model_folder_problems(folder) == [
        f"{folder}: the tokenizer has 384 token ids but config.json's vocab_size is 100: "
        "they belong to different models"
    ]


def test_run_stops_within_a_second_before_any_prefect_server(tmp_path, tiny, prefect_home):
    data = config(tmp_path, tiny)
    expected = _missing_prompts(data, tmp_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    started = time.monotonic()
    result = runner.invoke(app, ["run", str(path)])
    elapsed = time.monotonic() - started
    assert (result.exit_code, result.output.strip()) == (2, expected)
    assert elapsed < 1.0
    assert not prefect_home.exists()  # a temporary Prefect server would have made its database
    assert not (tmp_path / "runs").exists()


def test_run_preflight_imports_no_prefect_torch_or_vllm(tmp_path, tiny):
    """In a fresh process, a failed `run` has not imported Prefect, torch or vLLM."""
    data = config(tmp_path, tiny)
    _missing_model(data, tmp_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    script = (
        "import sys\nfrom typer.testing import CliRunner\nfrom prefsmith.flows.cli import app\n"
        f"r = CliRunner().invoke(app, ['run', {str(path)!r}])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'torch', 'vllm'})\n"
        "print(r.exit_code, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "2 []", out.stderr
