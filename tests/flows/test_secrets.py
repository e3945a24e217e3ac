"""Keys that never leak, against a REAL key-protected vLLM OpenAI server on 127.0.0.1.

One server (`--api-key`) serves the module. With the key in OPENAI_API_KEY the backend's samples
equal offline vLLM's; without it the server answers 401 and `prefsmith run` stops with one line
naming `api_key_env`; after a pipeline run (the CLI in its own process, on a temporary Prefect
server whose home is in the test folder) no file of the run folder, the Prefect home (its SQLite
database included) or the result storage holds the key or the URL credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "generation"))  # the vLLM server helpers
from vllm_server import free_port, serve_command, server_env, stop, wait_healthy

KEY = "sk-prefsmith-test-6d1f0a9c"
URL_USER, URL_PASSWORD = "leakuser", "leakpass-4b7e"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keyed_server(tiny, tmp_path_factory):
    """`http://127.0.0.1:PORT/v1` of a vLLM server that refuses requests without `KEY`."""
    log = tmp_path_factory.mktemp("keyed-server") / "server.log"
    port = free_port()
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [*serve_command(tiny.policy, port), "--api-key", KEY],
            env={k: v for k, v in server_env().items() if k != "OPENAI_API_KEY"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}", log, timeout_s=240)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def test_the_server_refuses_requests_without_the_key(keyed_server):
    body = {"model": "x", "prompt": [1, 2], "max_tokens": 1}
    assert httpx.post(f"{keyed_server}/completions", json=body).status_code == 401


def test_with_the_key_the_server_equals_offline_vllm(tiny, keyed_server, monkeypatch):
    from transformers import AutoTokenizer

    from prefsmith.generation.backends.openai_server import OpenAIServerBackend
    from prefsmith.generation.backends.vllm_offline import VllmBackend
    from prefsmith.generation.render import render_prompt_ids
    from prefsmith.schemas.data_configs import GenerateConfig, SamplingConfig

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.policy))
    prompts = [
        render_prompt_ids(
            [{"role": "user", "content": f"tell me about thing {i}"}], tokenizer=tokenizer
        )
        for i in range(4)
    ]
    sampling = SamplingConfig(n=2, temperature=0.7, top_p=0.9, max_new_tokens=12, seed=1)
    config = GenerateConfig(model=str(tiny.policy), dtype="float32", max_model_len=512)
    offline = VllmBackend(config, tokenizer=tokenizer)
    try:
        expected = offline.generate(prompts, sampling=sampling, seeds=[0, 1, 2, 3])
    finally:
        offline.close()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    served = config.model_copy(update={"backend": "openai", "servers": [keyed_server]})
    client = OpenAIServerBackend(served, tokenizer=tokenizer)
    try:
        got = client.generate(prompts, sampling=sampling, seeds=[0, 1, 2, 3])
    finally:
        client.close()
    assert got == expected  # ids, text and finish reason, sample by sample
    assert sum(len(c.token_ids) for samples in got for c in samples) > 4 * 2 * 4


def pipeline_env(root: Path, *, key: str | None) -> dict[str, str]:
    """The CLI's environment: its own Prefect home and result storage under `root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_LOCAL_STORAGE_PATH": str(root / "prefect-storage"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    env.pop("OPENAI_API_KEY", None)
    return env | ({"OPENAI_API_KEY": key} if key else {})


def run_cli(config: Path, *, root: Path, key: str | None) -> subprocess.CompletedProcess:
    prefsmith = Path(sys.executable).with_name("prefsmith")
    return subprocess.run(
        [str(prefsmith), "run", str(config)],
        env=pipeline_env(root, key=key),
        capture_output=True,
        text=True,
        timeout=600,
    )


def keyed_pipeline(pipeline_yaml, *, policy: Path, server: str) -> Path:
    """A cheap pipeline YAML (tests/flows/conftest.py) whose first server is dead and carries URL
    credentials (so they reach the down warning, the manifest and the flow-run parameters) and
    whose second is the keyed server."""
    dead = f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{free_port()}/v1"
    generate = {
        "model": str(policy),
        "backend": "openai",
        "servers": [dead, server],
        "shard_size": 2,
        "sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 12},
    }
    return pipeline_yaml("cfg", generate=generate)


def files_holding(roots: list[Path], needles: list[str]) -> dict[str, list[str]]:
    """{file: needles found in its bytes} over every file under `roots` (SQLite, WAL included)."""
    hits = {}
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            data = path.read_bytes()
            found = [n for n in needles if n.encode() in data]
            if found:
                hits[str(path)] = found
    return hits


def test_without_the_key_the_run_stops_with_one_line_naming_api_key_env(
    tiny, keyed_server, pipeline_yaml, tmp_path
):
    config = keyed_pipeline(pipeline_yaml, policy=tiny.policy, server=keyed_server)
    result = run_cli(config, root=tmp_path, key=None)
    assert result.returncode == 2, result.stderr[-3000:]
    # prefsmith's own line (Prefect's log lines around it are the quiet-output work's)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "(401)" in lines[0] and "environment variable OPENAI_API_KEY" in lines[0]
    assert "generate.api_key_env" in lines[0] and "is not set" in lines[0]
    assert URL_PASSWORD not in result.stderr + result.stdout


def test_a_keyed_pipeline_run_writes_no_secret_anywhere(
    tiny, keyed_server, pipeline_yaml, tmp_path
):
    import sqlite3

    config = keyed_pipeline(pipeline_yaml, policy=tiny.policy, server=keyed_server)
    result = run_cli(config, root=tmp_path, key=KEY)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    roots = [tmp_path / "cfg" / "runs", tmp_path / "prefect-home", tmp_path / "prefect-storage"]
    roots = [r for r in roots if r.exists()]
    written = [p for r in roots for p in r.rglob("*") if p.is_file()]
    database = next(p for p in written if p.name.endswith(".db"))
    manifests = [p for p in written if p.name == "responses.manifest.json"]
    assert manifests and len(written) > 20  # the grep below looks at a real run's files
    secrets = [KEY, URL_PASSWORD, f"{URL_USER}:"]
    assert files_holding(roots, secrets) == {}
    assert secrets[0] not in result.stdout + result.stderr
    # the servers were written down, redacted: in the manifest and in the flow-run parameters
    assert "http://***@127.0.0.1:" in manifests[0].read_text()
    with sqlite3.connect(database) as db:
        parameters = [row[0] for row in db.execute("SELECT parameters FROM flow_run")]
    assert any("http://***@127.0.0.1:" in p for p in parameters), parameters
