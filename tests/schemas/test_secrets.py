"""prefsmith.schemas.secrets: credentials in URLs and text are hidden, everything else kept."""

from __future__ import annotations

import json

import pytest

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.data_configs import GenerateConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.secrets import REVEAL, has_credentials, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("http://user:pw@host:8000/v1", "http://***@host:8000/v1"),
        ("https://only-user@host/v1", "https://***@host/v1"),
        ("http://:pw@host/v1", "http://***@host/v1"),
        ("http://u:p@ss@host/v1", "http://***@host/v1"),  # unescaped '@': hidden whole
        ("http://host/v1?api_key=k1&x=1", "http://host/v1?api_key=***&x=1"),
        ("http://host/v1?x=1&access_token=t#f", "http://host/v1?x=1&access_token=***#f"),
        ("http://host/v1?model=keyless", "http://host/v1?model=keyless"),  # a value, not a key
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert has_credentials(url) == (url != shown)


def test_redact_text_hides_every_url_in_a_line():
    line = "http://a:b@h1/v1/completions: ConnectError; then https://c@h2:9/v1 (HTTP 503)"
    assert redact_text(line) == (
        "http://***@h1/v1/completions: ConnectError; then https://***@h2:9/v1 (HTTP 503)"
    )
    assert redact_text("no url: user@example.com") == "no url: user@example.com"


def test_every_json_dump_of_a_config_is_redacted_unless_revealed():
    from fastapi.encoders import jsonable_encoder  # what Prefect stores flow-run parameters with

    config = GenerateConfig(model="m", backend="openai", servers=["http://u:secret@h/v1"])
    dumps = [
        config.model_dump_json(),
        json.dumps(config.model_dump(mode="json")),
        json.dumps(jsonable_encoder({"config": config})),
        str(config.model_dump()),
    ]
    assert all("secret" not in d and "http://***@h/v1" in d for d in dumps)
    revealed = config.model_dump(mode="json", context=REVEAL)
    assert revealed["servers"] == ["http://u:secret@h/v1"]
    assert GenerateConfig.model_validate(revealed) == config  # a process hand-off round-trips
    other = config.model_copy(update={"servers": ["http://u:other@h/v1"]})
    assert other.config_hash() == config.config_hash()  # a rotated password keeps the cache


def test_api_key_env_is_a_variable_name_and_no_key_field_exists():
    assert GenerateConfig(model="m").api_key_env == "OPENAI_API_KEY"
    for pasted in ("sk-abc123", "abc123XYZ"):  # a key pasted where its variable's name goes
        with pytest.raises(ConfigError, match="api_key_env must NAME") as error:
            parse_config(GenerateConfig, {"model": "m", "api_key_env": pasted})
        assert pasted not in str(error.value)
    with pytest.raises(ConfigError, match="api_key: unknown key"):
        parse_config(GenerateConfig, {"model": "m", "api_key": "sk-abc"})
