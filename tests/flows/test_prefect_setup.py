"""Prefect start-up: one place sets the temporary server's wait for every command, a server that
cannot start (or a PREFECT_API_URL nobody answers) is one line with the fix and exit code 2, and a
failed `prefsmith run` prints one `error:` line while Prefect's tracebacks go to the run's log."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from prefsmith.flows.prefect_setup import (
    DEFAULTS,
    STARTUP_TIMEOUT_ENV,
    STARTUP_TIMEOUT_S,
    server_problem,
)
from prefsmith.flows.prefect_setup import use_prefect_defaults as defaults

LEVELS = {"VLLM_LOGGING_LEVEL", "PREFECT_LOGGING_LEVEL", "PREFSMITH_VERBOSE"}


def prefsmith(*args: str, **env: str) -> tuple[int, list[str]]:
    """Run the CLI in a fresh process; its exit code and non-empty terminal lines."""
    dropped = {*LEVELS, STARTUP_TIMEOUT_ENV, "PREFECT_MEMO_STORE_PATH"}
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    base.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "prefsmith.flows.cli", *args],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "250", **env},
        timeout=300,
    )
    return done.returncode, [line for line in (done.stdout + done.stderr).splitlines() if line]


def test_the_start_up_wait_is_raised_unless_the_user_set_it(monkeypatch, tmp_path):
    # setenv first: whatever defaults() sets in os.environ is undone after the test
    for key in (*DEFAULTS, "PREFECT_MEMO_STORE_PATH"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    defaults()
    assert os.environ[STARTUP_TIMEOUT_ENV] == str(STARTUP_TIMEOUT_S) != "20"
    monkeypatch.setenv(STARTUP_TIMEOUT_ENV, "7")
    defaults()
    assert os.environ[STARTUP_TIMEOUT_ENV] == "7"
    assert os.environ["PREFECT_MEMO_STORE_PATH"] == str(tmp_path / "memo_store.toml")


def test_only_prefects_server_errors_are_translated():
    assert server_problem(RuntimeError("something else broke")) is None
    assert server_problem(ValueError("Failed to reach API at x")) is None
    line = server_problem(RuntimeError("Failed to reach API at http://127.0.0.1:9/api/"))
    assert line is not None and "http://127.0.0.1:9/api/" in line and "\n" not in line


def test_a_temporary_server_that_cannot_start_is_one_line(pipeline_yaml):
    """A real failure: a 0 s start-up wait fails Prefect's own server start."""
    code, shown = prefsmith(
        "run", str(pipeline_yaml("t0", n_prompts=2)), **{STARTUP_TIMEOUT_ENV: "0"}
    )
    assert code == 2 and len(shown) == 1, shown
    assert shown[0].startswith("error: Prefect's temporary server did not start within 0 s")
    assert f"export {STARTUP_TIMEOUT_ENV}=" in shown[0] and "prefect server start" in shown[0]


def test_an_api_url_nobody_answers_is_one_line(pipeline_yaml):
    code, shown = prefsmith(
        "run", str(pipeline_yaml("dead", n_prompts=2)), PREFECT_API_URL="http://127.0.0.1:9/api"
    )
    assert code == 2 and len(shown) == 1, shown
    assert shown[0].startswith("error: no Prefect server answers at http://127.0.0.1:9/api")


@pytest.mark.slow
def test_a_failed_run_prints_one_error_line_and_logs_the_traceback(pipeline_yaml, tmp_path):
    """The prompts stage keeps no rows (no such field), so the score stage has no input: before,
    this printed 154 lines (three Prefect tracebacks); now the stage count lines and one error."""
    config = pipeline_yaml("fails", n_prompts=2, isolate_stages=False)
    data = yaml.safe_load(config.read_text())
    data["prompts"]["prompt_field"] = "no_such_field"
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "build"
    code, shown = prefsmith("run", str(config), "--run-dir", str(run_dir))
    errors = [line for line in shown if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and len(shown) <= 4, shown
    assert not any("Traceback" in line or "prefect" in line.lower() for line in shown), shown
    log = (run_dir / "logs" / "prefect.log").read_text()
    assert "Traceback" in log and "Encountered exception during execution" in log
    assert (run_dir / "INCOMPLETE").is_file()  # the failed build says so


def test_python_dash_m_pipeline_gets_the_defaults_and_stops_in_one_line(tmp_path):
    """`python -m prefsmith.flows.pipeline` sets the defaults before Prefect loads (Prefect reads
    its settings at import): the flow module, run as a script, sees the raised start-up wait."""
    probe = (
        "import runpy, sys; sys.argv = ['pipeline', sys.argv[1]]\n"
        "try:\n    runpy.run_module('prefsmith.flows.pipeline', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    import prefect.settings as s\n"
        "    print(s.get_current_settings().server.ephemeral.startup_timeout_seconds, stop.code)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != STARTUP_TIMEOUT_ENV}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "missing.yaml")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.stdout.split() == [str(STARTUP_TIMEOUT_S), "2"], done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"error: config file not found: {tmp_path / 'missing.yaml'}"
    ]
