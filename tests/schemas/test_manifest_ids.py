"""Manifests reconcile their counts; ids are stable under formatting noise."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from prefsmith.schemas.ids import pair_id, prompt_id, response_id
from prefsmith.schemas.manifest import Manifest, manifest_path


def _manifest(**counts):
    return Manifest(stage="t", unit="prompt", config={}, inputs=[], outputs={}, **counts)


def test_counts_must_reconcile():
    assert _manifest(rows_in=5, rows_out=3, dropped={"a": 1, "b": 1}).rows_out == 3
    with pytest.raises(ValidationError, match="do not reconcile"):
        _manifest(rows_in=5, rows_out=3, dropped={"a": 1})


def test_manifest_round_trip(tmp_path):
    written = _manifest(rows_in=2, rows_out=2, extra={"k": [1, 2]}).write(tmp_path / "m.json")
    assert Manifest.read(written).extra == {"k": [1, 2]}
    assert manifest_path(tmp_path / "pairs.parquet").name == "pairs.manifest.json"
    assert manifest_path(tmp_path / "responses").name == "responses.manifest.json"


def test_prompt_id_ignores_whitespace_role_case_and_unicode_form():
    a = prompt_id([{"role": "user", "content": "caf\u00e9 ?"}])
    b = prompt_id([{"role": "User", "content": "  cafe\u0301 ?\n"}])
    c = prompt_id([{"role": "user", "content": "cafe ?"}])
    assert a == b != c and len(a) == 16
    assert response_id(a, 3) == f"{a}-3"
    assert pair_id("x-0", "x-1") != pair_id("x-1", "x-0")


def test_schemas_import_no_heavy_library():
    code = (
        "import sys, prefsmith.schemas.tables, prefsmith.schemas.io, prefsmith.schemas.manifest, prefsmith.schemas.config_base, "
        "prefsmith.schemas.data_configs, prefsmith.schemas.quarantine, prefsmith.schemas.ids\n"
        "import pkgutil, importlib, schemas\n"
        "[importlib.import_module('schemas.' + m.name) for m in pkgutil.iter_modules(prefsmith.schemas.__path__)]\n"
        "bad = [m for m in ('torch', 'vllm', 'prefect') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
