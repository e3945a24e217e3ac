"""Every module of every package imports (catches undefined names and import cycles early)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

FOLDERS = [
    "schemas",
    "generation",
    "scoring",
    "curation",
    "inspection",
    "training",
    "evaluation",
    "flows",
]
PACKAGES = [f"prefsmith.{folder}" for folder in FOLDERS]


def _modules():
    for name in PACKAGES:
        package = importlib.import_module(name)
        yield name
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            yield info.name


@pytest.mark.parametrize("module", sorted(_modules()))
def test_module_imports(module):
    importlib.import_module(module)
