"""The wheel installs one top-level name, `prefsmith`; outside the repository the folders are
importable only as `prefsmith.<folder>` (a user's own `training/` cannot clash with ours)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = (
    "schemas",
    "generation",
    "scoring",
    "curation",
    "inspection",
    "training",
    "evaluation",
    "flows",
)


def source_copy(root: Path) -> Path:
    """The checkout's files (tracked, or new and not ignored) in a fresh folder: setuptools
    writes build/ beside its sources, and a stale build/ in the checkout could leak into a wheel."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    return root


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = source_copy(tmp_path_factory.mktemp("source"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("prefsmith-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_has_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["prefsmith"]
        entry_points = archive.read(top_level.replace("top_level.txt", "entry_points.txt"))
    roots = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert roots == {"prefsmith"}
    for folder in FOLDERS:
        assert f"prefsmith/{folder}/__init__.py" in names
    assert "prefsmith/flows/data/quickstart_prompts.jsonl" in names  # package data travels
    assert "prefsmith/training/deepspeed/zero3.json" in names
    assert b"prefsmith = prefsmith.flows.cli:app" in entry_points


@pytest.mark.slow
def test_outside_the_repository_only_the_prefsmith_names_import(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = (
        "import importlib.util as u, prefsmith.training.losses as l; print(l.__file__); "
        "print([m for m in ('training', 'schemas', 'flows') if u.find_spec(m) is not None])"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    losses_file, bare = done.stdout.splitlines()
    assert Path(losses_file).is_relative_to(target)  # the wheel's copy, not the checkout's
    assert bare == "[]"  # `import training` finds nothing
