"""Secrets are never written down: the one place that hides credentials in URLs and text.

A key for an OpenAI-compatible server lives only in the environment (`generate.api_key_env`,
read at request time); no config field holds one. A URL may still carry credentials
(`http://user:pass@host/v1`, for a proxy with basic auth) and configs are written in many places
(manifests, Prefect's flow-run parameters, cache keys, log and error lines), so:

- `redact_url` replaces a URL's user-info with `***` and the values of secret-looking query
  parameters (`?api_key=...`) with `***`;
- `redact_text` does the same for every URL inside a free-text line (an error, a log message);
- `redact_servers` is the JSON serializer of `GenerateConfig.servers`, so every
  `model_dump(mode="json")` / `model_dump_json()` of a config, and with it every manifest, config
  hash and Prefect parameter, is free of them. Handing a config to a child process that must
  connect is the one dump that may keep them: `model_dump(mode="json", context=REVEAL)`.
"""

from __future__ import annotations

import re

from pydantic import SerializationInfo

MASK = "***"
REVEAL = {"reveal_secrets": True}  # serialization context: keep credentials (process hand-off)
# scheme://userinfo@ inside any text, up to the LAST '@' before the path (as URL parsers split
# it), so a password with an unescaped '@' is hidden whole
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&][^=&\s#]*(?:key|token|secret|password|passwd|auth)[^=&\s#]*=)[^&\s#]+",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """`url` without its credentials: user-info and secret query values become `***`.

    >>> redact_url("http://user:pw@host:8000/v1?api_key=k&x=1")
    'http://***@host:8000/v1?api_key=***&x=1'
    """
    return redact_text(url)


def redact_text(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***` (one-line messages)."""
    return _QUERY_SECRET.sub(rf"\g<name>{MASK}", _USERINFO.sub(rf"\g<scheme>{MASK}@", text))


def has_credentials(url: str) -> bool:
    """Whether `url` carries something `redact_url` hides."""
    return redact_url(url) != url


def redact_servers(servers: list[str], info: SerializationInfo) -> list[str]:
    """Serializer of a list of server URLs: redacted unless the context is `REVEAL`."""
    if (info.context or {}).get("reveal_secrets"):
        return list(servers)
    return [redact_url(url) for url in servers]
