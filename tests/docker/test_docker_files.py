"""docker/: the Dockerfiles lint clean, the compose file renders with the promised properties, and
the images install what the Makefile and pyproject.toml say (so a drift between them fails here).

No image is built and no container runs (no Docker engine on these machines): hadolint and
`docker compose config` are the checks, each with a negative control proving it can fail.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical, parts = [], []
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments, also between continuation lines, as Docker reads them
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        logical.append(" ".join([*parts, line]).strip())
        parts = []
    split = [line.split(None, 1) for line in logical if line]
    return [(words[0].upper(), words[1] if len(words) > 1 else "") for words in split]


def shell_commands(path: Path) -> list[list[str]]:
    """Every `&&`-separated command of every RUN, as argv lists."""
    commands = []
    for name, args in instructions(path):
        if name == "RUN":
            commands += [shlex.split(part) for part in args.split("&&")]
    return commands


def pip_commands(path: Path, verb: str) -> list[list[str]]:
    """The arguments after `pip VERB` of every such command (`python -m pip` included)."""
    found = []
    for argv in shell_commands(path):
        for i in range(len(argv) - 1):
            if argv[i] == "pip" and argv[i + 1] == verb:
                found.append(argv[i + 2 :])
    return found


def makefile_recipe(target: str) -> list[str]:
    """The recipe lines (tab-indented, comments dropped) of `target` in the repository Makefile."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        if not line.strip().startswith("#"):
            recipe.append(line.strip())
    return recipe


def requirement_key(text: str) -> tuple[str, tuple[str, ...], str]:
    req = Requirement(text)
    return canonicalize_name(req.name), tuple(sorted(req.extras)), str(req.specifier)


def from_image(path: Path) -> str:
    return next(args for name, args in instructions(path) if name == "FROM")


# --- hadolint ----------------------------------------------------------------------------------


def lint(hadolint: Path, dockerfile: Path) -> subprocess.CompletedProcess:
    """hadolint with the project's settings (docker/.hadolint.yaml), as CI and users run it."""
    cmd = [str(hadolint), "--no-color", "-c", str(DOCKER / ".hadolint.yaml"), str(dockerfile)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_hadolint_passes(hadolint, flavor):
    result = lint(hadolint, DOCKERFILES[flavor])
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_hadolint_harness_catches_findings(hadolint, tmp_path):
    """Negative control: the same call fails on an unpinned base image and an unpinned pip."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install --no-cache-dir requests\n")
    result = lint(hadolint, bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout, result.stdout


# --- compose ------------------------------------------------------------------------------------


def test_prefect_server_published_on_loopback_only(rendered):
    server = rendered()["services"]["prefect-server"]
    assert server["command"][:3] == ["prefect", "server", "start"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in server["ports"]] == [
        ("127.0.0.1", "4200", 4200)
    ]
    assert "/api/health" in " ".join(server["healthcheck"]["test"])
    assert server["environment"]["PREFECT_UI_API_URL"] == "http://127.0.0.1:4200/api"
    assert [v["target"] for v in server["volumes"] if v["type"] == "volume"] == ["/data"]
    assert "deploy" not in server  # the server holds no GPU


def test_vllm_server_only_in_its_profile(compose, rendered):
    plain = compose("-f", str(COMPOSE_FILE), "config", "--services")
    with_vllm = compose("-f", str(COMPOSE_FILE), "--profile", "vllm", "config", "--services")
    assert plain.returncode == 0 and with_vllm.returncode == 0, plain.stderr + with_vllm.stderr
    assert set(plain.stdout.split()) == {"prefect-server", "worker"}
    assert set(with_vllm.stdout.split()) == {"prefect-server", "worker", "vllm"}
    vllm = rendered("vllm")["services"]["vllm"]
    assert vllm["profiles"] == ["vllm"]
    assert vllm["entrypoint"] == ["vllm", "serve"] and "--served-model-name" in vllm["command"]
    assert [(p["host_ip"], p["target"]) for p in vllm["ports"]] == [("127.0.0.1", 8000)]
    assert "8000/health" in " ".join(vllm["healthcheck"]["test"])
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_vllm_server_runs_the_gpu_image_base(rendered):
    """One vLLM build: the compose server's default image is the GPU Dockerfile's base."""
    assert rendered("vllm")["services"]["vllm"]["image"] == from_image(DOCKERFILES["gpu"])


def test_worker_serves_the_rebuild_on_a_schedule(rendered):
    worker = rendered()["services"]["worker"]
    command = worker["command"]
    assert command[:3] == ["prefsmith", "serve", "/config/pipeline.yaml"]
    assert command[command.index("--cron") + 1] == "0 3 * * *"
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["depends_on"]["prefect-server"] == {
        "condition": "service_healthy",
        "required": True,
    }
    assert worker["depends_on"]["vllm"]["required"] is False  # waits for it only when it is on
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "count": -1}]  # -1: all
    mounts = {v["target"]: v for v in worker["volumes"]}
    assert mounts["/config"]["read_only"] and mounts["/models"]["read_only"]
    assert mounts["/data"]["type"] == "volume" and mounts["/data"]["source"] == "prefsmith-data"


def test_named_volumes_declared(rendered):
    config = rendered("vllm")
    used = {
        v["source"]
        for s in config["services"].values()
        for v in s.get("volumes", [])
        if v["type"] == "volume"
    }
    assert used == {"prefect-db", "prefsmith-data"} and used <= set(config["volumes"])


def test_environment_overrides_flow_into_services(rendered):
    env = {
        "PREFSMITH_CRON": "*/5 * * * *",
        "PREFECT_PORT": "4300",
        "PREFECT_BIND": "0.0.0.0",
        "PREFSMITH_FLAVOR": "cpu",
        "PREFSMITH_CONFIG_FILE": "nightly.yaml",
    }
    services = rendered(env=env)["services"]
    command = services["worker"]["command"]
    assert command[command.index("--cron") + 1] == "*/5 * * * *"
    assert command[2] == "/config/nightly.yaml"
    server = services["prefect-server"]
    assert [(p["host_ip"], p["published"]) for p in server["ports"]] == [("0.0.0.0", "4300")]
    assert server["environment"]["PREFECT_UI_API_URL"] == "http://127.0.0.1:4300/api"
    for name in ("prefect-server", "worker"):
        assert services[name]["image"] == "prefsmith:cpu"
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile.cpu"


def test_readme_cpu_override_drops_the_gpu_reservation(compose, tmp_path):
    """The README's CPU-only override file, taken from the README itself, renders as promised."""
    readme = (DOCKER / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    override = tmp_path / "compose.cpu.yaml"
    override.write_text(next(block for block in blocks if "!reset" in block))
    result = compose(
        "-f",
        str(COMPOSE_FILE),
        "-f",
        str(override),
        "config",
        "--format",
        "json",
        env={"PREFSMITH_FLAVOR": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    worker = yaml.safe_load(result.stdout)["services"]["worker"]
    assert "deploy" not in worker and worker["image"] == "prefsmith:cpu"


@pytest.mark.parametrize(
    "broken",
    [
        "servicez:\n  x:\n    image: alpine:3.20\n",  # unknown top-level key
        "services:\n  x:\n    image: alpine:3.20\n    ports: ['127.0.0.1:http:80']\n",  # bad port
    ],
    ids=["unknown-key", "bad-port"],
)
def test_compose_config_rejects_a_broken_file(compose, tmp_path, broken):
    """Negative control: the same `config` call fails on an invalid compose file."""
    path = tmp_path / "compose.yaml"
    path.write_text(broken)
    result = compose("-f", str(path), "config")
    assert result.returncode != 0, result.stdout


def test_readme_documents_every_compose_variable():
    variables = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    readme = (DOCKER / "README.md").read_text()
    assert variables, "the compose file should be configurable through ${VAR:-default}"
    assert sorted(v for v in variables if f"`{v}`" not in readme) == []


# --- what the images install ----------------------------------------------------------------------


def test_cpu_image_installs_exactly_the_lock_like_the_makefile():
    """Mirror of the Makefile's $(STAMP) recipe: same lock, same uninstall list, --no-deps wheel."""
    recipe = makefile_recipe("$(STAMP)")
    make_install = next(shlex.split(line) for line in recipe if " -r " in line)
    make_uninstall = next(shlex.split(line) for line in recipe if "pip uninstall" in line)
    lock = make_install[make_install.index("-r") + 1]
    path = DOCKERFILES["cpu"]
    copied = [args.split()[0] for name, args in instructions(path) if name == "COPY"]
    assert lock in copied, f"{path.name} must COPY {lock}"
    installs = pip_commands(path, "install")
    assert [args[args.index("-r") + 1] for args in installs if "-r" in args] == [lock]
    others = [args for args in installs if "-r" not in args and args[-2:] != ["--no-deps", "."]]
    assert [args[-1].split("==")[0] for args in others] == ["pip"], others  # the installer only
    assert "DS_BUILD_OPS=0" in make_install and any(
        "DS_BUILD_OPS=0" in argv and "-r" in argv for argv in shell_commands(path)
    )
    removed = make_uninstall[make_uninstall.index("-y") + 1 :]
    (docker_uninstall,) = pip_commands(path, "uninstall")
    assert docker_uninstall[docker_uninstall.index("-y") + 1 :] == removed


def test_gpu_image_pins_are_pyprojects():
    """The GPU image's pip pins = [project] dependencies + the `gpu` extra, less vllm (the base's)."""
    project = PYPROJECT["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["gpu"]
    expected = {
        requirement_key(r) for r in wanted if canonicalize_name(Requirement(r).name) != "vllm"
    }
    (install,) = [args for args in pip_commands(DOCKERFILES["gpu"], "install") if "." not in args]
    pinned = {
        requirement_key(arg) for arg in install if not arg.startswith("-") and ".txt" not in arg
    }
    assert pinned == expected
    image, tag = from_image(DOCKERFILES["gpu"]).split(":")
    assert image == "vllm/vllm-openai" and Version(tag.removeprefix("v"))  # a release, not latest


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_images_copy_every_package(flavor):
    """Each folder the wheel maps to a package is copied in (a missing one would be silently
    absent from the image's prefsmith)."""
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    packages = {folder.split("/")[0] for folder in mapping.values()}
    assert len(packages) == 8  # schemas ... flows: every folder of DESIGN.md's layout
    copies = [args.split() for name, args in instructions(DOCKERFILES[flavor]) if name == "COPY"]
    sources = {src for parts in copies for src in parts[:-1]}
    assert packages <= sources, f"not copied: {sorted(packages - sources)}"
    assert {"pyproject.toml", "README.md"} <= sources


def test_cpu_image_python_satisfies_requires_python():
    image = from_image(DOCKERFILES["cpu"])
    version = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-\w+", image)
    assert version, f"pin the CPU base to an exact Python release, got {image}"
    assert version.group(1) in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_dockerignore_keeps_what_the_images_copy():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "docker/models"} <= set(patterns)
    needed = {"pyproject.toml", "README.md", "requirements/lock-cpu.txt", "schemas/io.py"}
    for flavor in DOCKERFILES:
        copies = [
            args.split() for name, args in instructions(DOCKERFILES[flavor]) if name == "COPY"
        ]
        needed |= {src for parts in copies for src in parts[:-1]}
    excluded = {path for path in needed for p in patterns if fnmatch(path, p.removeprefix("**/"))}
    assert excluded == set()


def test_readme_openai_generate_snippet_is_a_valid_config():
    """The README's `generate:` block for the vLLM server loads with the real config model."""
    from prefsmith.schemas.data_configs import GenerateConfig

    readme = (DOCKER / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "generate:" in b
    )
    config = GenerateConfig.model_validate(yaml.safe_load(block)["generate"])
    compose_text = COMPOSE_FILE.read_text()
    assert config.backend == "openai" and config.servers == ["http://vllm:8000/v1"]
    assert f"VLLM_SERVED_MODEL_NAME:-{config.served_model_name}}}" in compose_text
    assert f"VLLM_MODEL:-{config.model}}}" in compose_text
