"""API keys for OpenAI-compatible servers and credentials in their URLs (mock transport): the
key is read from `generate.api_key_env` at request time and sent as a Bearer token, a 401 names
that variable, and URL credentials never reach a log line, an error or a config dump. The real
key-protected vLLM server is in tests/flows/test_secrets.py."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from test_openai_backend import (  # noqa: F401  (_tokenizer: the module fixture)
    MODULE,
    SAMPLING,
    TOKENIZER,
    _tokenizer,
    backend,
    fake_server,
)

from prefsmith.generation.backends.openai_server import OpenAIServerBackend
from prefsmith.schemas.data_configs import GenerateConfig
from prefsmith.schemas.errors import ServerUnavailable, StageError, is_transient


def recording_server(seen: list, *, key: str | None = None):
    """A mock server that records each request's Authorization header; with `key` it answers
    401 (as `vllm serve --api-key`) unless the header is `Bearer <key>`."""
    inner = fake_server([])

    def handle(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization")
        seen.append(header)
        if key is not None and header != f"Bearer {key}":
            return httpx.Response(401, json={"error": "Unauthorized"})
        return inner.handle_request(request)

    return httpx.MockTransport(handle)


def test_the_key_is_read_from_the_named_variable_at_request_time(monkeypatch):
    """No variable: no header; set later: sent as a Bearer token by the same backend; a config
    naming another variable reads that one."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seen = []
    client = backend(recording_server(seen), servers=["http://a/v1"])
    client.generate([[1]], sampling=SAMPLING, seeds=[0])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-first")
    client.generate([[1]], sampling=SAMPLING, seeds=[0])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-rotated")
    client.generate([[1]], sampling=SAMPLING, seeds=[0])
    assert seen == [None, "Bearer sk-first", "Bearer sk-rotated"]

    monkeypatch.setenv("MY_VLLM_KEY", "sk-other")
    config = GenerateConfig(
        model="m", backend="openai", servers=["http://a/v1"], api_key_env="MY_VLLM_KEY"
    )
    OpenAIServerBackend(
        config, tokenizer=TOKENIZER["tiny"], transport=recording_server(seen)
    ).generate([[1]], sampling=SAMPLING, seeds=[0])
    assert seen[-1] == "Bearer sk-other"


@pytest.mark.parametrize(("key", "says"), [(None, "is not set"), ("wrong", "server refused it")])
def test_a_401_stops_with_one_line_naming_the_variable(monkeypatch, key, says):
    if key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    client = backend(recording_server([], key="right"), servers=["http://a/v1"])
    with pytest.raises(StageError) as error:
        client.generate([[1]], sampling=SAMPLING, seeds=[0])
    message = str(error.value)
    assert not is_transient(error.value) and "\n" not in message
    assert "(401)" in message and "environment variable OPENAI_API_KEY" in message
    assert "generate.api_key_env" in message and says in message
    assert "wrong" not in message and "right" not in message


def test_url_credentials_never_reach_logs_errors_or_dumps(monkeypatch, caplog):
    """A server URL with user-info: the request still carries it (httpx basic auth), but the
    down warning, the final error and every JSON dump of the config show `***` instead."""
    monkeypatch.setattr(f"{MODULE}.BACKOFF_S", 0.0)
    caplog.set_level(logging.INFO, logger=MODULE)
    servers = ["http://bob:hunter2@a/v1", "http://b/v1?api_key=hunter3"]
    config = GenerateConfig(model="m", backend="openai", servers=servers)
    client = OpenAIServerBackend(
        config, tokenizer=TOKENIZER["tiny"], transport=fake_server([], down={"a", "b"})
    )
    with pytest.raises(ServerUnavailable) as error:
        client.generate([[1]], sampling=SAMPLING, seeds=[0])
    written = [str(error.value), *(r.getMessage() for r in caplog.records)]
    written += [config.model_dump_json(), json.dumps(config.model_dump(mode="json"))]
    assert not [line for line in written if "hunter" in line or "bob" in line], written
    assert "http://***@a/v1 is down" in caplog.records[0].getMessage()
    assert config.model_dump(mode="json")["servers"] == [
        "http://***@a/v1",
        "http://b/v1?api_key=***",
    ]
    assert config.servers == servers  # the live config keeps them: requests need them


def test_basic_auth_from_the_url_is_still_sent():
    import base64

    seen = []
    config = GenerateConfig(model="m", backend="openai", servers=["http://bob:hunter2@a/v1"])
    OpenAIServerBackend(
        config, tokenizer=TOKENIZER["tiny"], transport=recording_server(seen)
    ).generate([[1]], sampling=SAMPLING, seeds=[0])
    assert seen == ["Basic " + base64.b64encode(b"bob:hunter2").decode()]
