"""Preflight: every problem of a pipeline config that shows before anything runs, one per line.

`prefsmith validate`, `run` and `serve` call `preflight` first. Besides the config models' own
checks (unknown keys with a "did you mean", types, loss ranges, lengths), it looks at what the
config names on disk, reading small JSON files only (no torch, no vLLM, no weights loaded):

| check            | what is read                                                              |
|------------------|---------------------------------------------------------------------------|
| prompts.path     | exists, readable, a format by extension (or `format:`); Parquet magic bytes |
| model folders    | config.json, a tokenizer, weights; tokenizer vocabulary ≤ config vocab_size |
| rule scorers     | the rule name and its parameter names (scoring.rules), then its own checks |
| other files      | train.launch.hostfile, train.resume (a path)                              |
| out_dir          | the folder (or its nearest existing parent) is a writable folder          |

The model folders are generate.model (not with the openai backend, nor `latest`), score.model (not an llm_judge's) and
evaluate.scorer.model (when the scorer loads one), train.policy and reference.model. Checks run
on the raw YAML mapping as far as it has the right shape, so a config with an unknown key and a
missing file reports both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from prefsmith.schemas.config_base import did_you_mean, error_lines
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.parquet_files import parquet_problem
from prefsmith.schemas.pipeline_config import PipelineConfig
from prefsmith.schemas.sources import SUFFIX_FORMATS

WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
VOCAB_FILES = ("vocab.json", "vocab.txt", "tokenizer.model", "spiece.model")
# Parameter names of the built-in rules (scoring/rules.py's table); a rule registered elsewhere
# has no entry and only gets its own parameter check.
RULE_PARAMS = {
    "exact_match": ("answer_key", "answer_regex"),
    "regex": ("pattern", "count", "ignore_case"),
    "length_target": ("target",),
}


class PreflightError(ConfigError):
    """Every problem preflight found; `str()` puts one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def preflight(
    data: dict[str, Any], *, out_dir: str | Path | None = None, files: bool = True
) -> PipelineConfig:
    """The validated config of the raw YAML mapping `data`, or a PreflightError listing every
    problem. `out_dir` replaces the config's for the writable check (`run --run-dir`);
    `files=False` checks keys and values only (a config written for another machine)."""
    problems: list[str] = []
    config = None
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as error:
        problems += error_lines(error, model=PipelineConfig)
    if files:
        problems += file_problems(data, out_dir=out_dir)
    problems += rule_problems(data)
    if problems or config is None:
        raise PreflightError(list(dict.fromkeys(problems)))
    return config


def _section(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The mapping at `keys` of the raw config, or {} where it is missing or not a mapping."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _string(section: dict[str, Any], key: str) -> str | None:
    value = section.get(key)
    return value if isinstance(value, str) and value else None


def file_problems(data: dict[str, Any], *, out_dir: str | Path | None = None) -> list[str]:
    """Problems of the files and folders the raw config `data` names."""
    problems = prompts_problems(_section(data, "prompts"))
    seen: set[Path] = set()
    for where, folder in model_folders(data):
        if Path(folder).resolve() not in seen:
            seen.add(Path(folder).resolve())
            problems += [f"{where}: {p}" for p in model_folder_problems(Path(folder))]
    train = _section(data, "train")
    hostfile = _string(_section(train, "launch"), "hostfile")
    if hostfile and not Path(hostfile).is_file():
        problems.append(f"train.launch.hostfile: file not found: {hostfile}")
    resume = _string(train, "resume")
    if resume and not Path(resume).is_dir():
        problems.append(f"train.resume: checkpoint folder not found: {resume}")
    target = out_dir if out_dir is not None else data.get("out_dir", "runs")
    if isinstance(target, str | Path):
        problems += [f"out_dir: {p}" for p in writable_problems(Path(target))]
    return problems


def prompts_problems(prompts: dict[str, Any]) -> list[str]:
    """Whether the prompts file exists, is readable and has a format prefsmith reads."""
    path_text = _string(prompts, "path")
    if path_text is None:
        return []  # the config model reports the missing field
    path, declared = Path(path_text), prompts.get("format", "auto")
    if not path.exists():
        return [f"prompts.path: file not found: {path}"]
    if path.is_dir():
        if declared not in ("auto", "hf"):
            return [f"prompts.path: {path} is a folder, but format is {declared!r}"]
        return []  # an HF dataset folder: `datasets` reads it at run time
    fmt = declared if declared != "auto" else SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        return [
            f"prompts.path: cannot tell the format of {path.name!r} from its extension; "
            "use .jsonl, .parquet or .csv, or set prompts.format"
        ]
    if not os.access(path, os.R_OK):
        return [f"prompts.path: not readable: {path}"]
    if path.stat().st_size == 0:
        return [f"prompts.path: empty file: {path}"]
    if fmt == "parquet" and parquet_problem(path) is not None:
        return [f"prompts.path: not a Parquet file (no PAR1 header and footer): {path}"]
    return []


def model_folders(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(config location, folder) of every model the raw config loads."""
    found = []
    generate = _section(data, "generate")
    # a server's model, or `latest` (resolved when the build starts: prefsmith.flows.latest)
    elsewhere = generate.get("backend") == "openai" or generate.get("model") == "latest"
    if not elsewhere and _string(generate, "model"):
        found.append(("generate.model", generate["model"]))
    for where, scorer in _scorers(data):
        # a rule loads no model; a served judge's folder needs only its tokenizer, not weights
        if scorer.get("kind", "reward_model") not in ("rule", "llm_judge") and _string(
            scorer, "model"
        ):
            found.append((f"{where}.model", scorer["model"]))
    if _string(_section(data, "train"), "policy"):
        found.append(("train.policy", data["train"]["policy"]))
    if _string(_section(data, "reference"), "model"):
        found.append(("reference.model", data["reference"]["model"]))
    return found


def _eval_scorer(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    scorer = _section(data, "evaluate", "scorer")
    return [("evaluate.scorer", scorer)] if scorer else []


def _scorers(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(location, raw section) of every scorer: `score` (one, or a list) and evaluate.scorer."""
    score = data.get("score")
    if isinstance(score, list):
        found = [(f"score[{i}]", s) for i, s in enumerate(score) if isinstance(s, dict)]
    else:
        found = [("score", _section(data, "score"))]
    return found + _eval_scorer(data)


def model_folder_problems(folder: Path) -> list[str]:
    """What a model folder lacks: config, tokenizer, weights, or a vocabulary that fits."""
    if not folder.is_dir():
        return [f"model folder not found: {folder} (preflight checks local folders only)"]
    problems = []
    config = _read_json(folder / "config.json")
    if config is None:
        problems.append(f"{folder}: no readable config.json")
    if not _has_tokenizer(folder):
        problems.append(
            f"{folder}: no tokenizer (tokenizer.json, or tokenizer_config.json with a vocabulary)"
        )
    if not _has_weights(folder):
        problems.append(f"{folder}: no weights (*.safetensors, *.bin or a sharded index)")
    model_vocab = _config_vocab_size(config) if config else None
    tokenizer_vocab = tokenizer_vocab_size(folder)
    if model_vocab is not None and tokenizer_vocab is not None and tokenizer_vocab > model_vocab:
        problems.append(
            f"{folder}: the tokenizer has {tokenizer_vocab} token ids but config.json's "
            f"vocab_size is {model_vocab}: they belong to different models"
        )
    return problems


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _has_tokenizer(folder: Path) -> bool:
    if (folder / "tokenizer.json").is_file():
        return True
    has_vocab = any((folder / name).is_file() for name in VOCAB_FILES)
    return (folder / "tokenizer_config.json").is_file() and has_vocab


def _has_weights(folder: Path) -> bool:
    if any((folder / name).is_file() for name in WEIGHT_INDEXES):
        return True
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def _config_vocab_size(config: dict[str, Any]) -> int | None:
    """config.json's vocab_size (a multimodal config keeps it under text_config)."""
    size = config.get("vocab_size", _section(config, "text_config").get("vocab_size"))
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def tokenizer_vocab_size(folder: Path) -> int | None:
    """Highest token id + 1 of the folder's tokenizer.json (or vocab.json), added tokens
    included; None when neither is there (a SentencePiece model is not read)."""
    tokenizer = _read_json(folder / "tokenizer.json")
    if tokenizer is not None:
        vocab = _section(tokenizer, "model").get("vocab")
        ids = list(vocab.values()) if isinstance(vocab, dict) else []
        if isinstance(vocab, list):  # Unigram: [[piece, score], ...], ids are positions
            ids = [len(vocab) - 1] if vocab else []
    else:
        vocab = _read_json(folder / "vocab.json") or {}
        ids = list(vocab.values())
        tokenizer = {}
    ids += [t.get("id") for t in tokenizer.get("added_tokens") or [] if isinstance(t, dict)]
    ids = [i for i in ids if isinstance(i, int)]
    return max(ids) + 1 if ids else None


def writable_problems(folder: Path) -> list[str]:
    """Whether outputs can be written under `folder` (created at run time if missing)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [f"{existing} is a file, not a folder: outputs cannot go under {folder}"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{existing} is not writable: outputs cannot go under {folder}"]
    return []


def rule_problems(data: dict[str, Any]) -> list[str]:
    """Unknown rule names and parameters of the rule scorers, and each rule's own checks."""
    problems = []
    for where, scorer in _scorers(data):
        name = _string(scorer, "rule")
        if scorer.get("kind") == "rule" and name is not None:
            params = scorer.get("params") if isinstance(scorer.get("params"), dict) else {}
            problems += rule_config_problems(name, params, where=where)
    return problems


def rule_config_problems(name: str, params: dict[str, Any], *, where: str) -> list[str]:
    """Problems of one rule scorer `name` with `params`, located at `where` (e.g. `score`)."""
    from prefsmith.scoring.rules import RULES, get_rule  # no model: a plain registry

    if name not in RULES:
        return [
            f"{where}.rule: unknown rule {name!r}{did_you_mean(name, RULES)}; known: {_known(RULES)}"
        ]
    known = RULE_PARAMS.get(name)
    unknown = [key for key in params if known is not None and key not in known]
    if unknown:
        return [
            f"{where}.params.{key}: unknown parameter of rule {name!r}{did_you_mean(key, known)}; "
            f"known: {_known(known)}"
            for key in unknown
        ]
    try:
        get_rule(name, params=params)
    except ConfigError as error:  # the rule's own message says score.params...
        return [str(error).replace("score.", f"{where}.", 1)]
    return []


def _known(names) -> str:
    return ", ".join(sorted(names))
