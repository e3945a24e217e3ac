"""The stage registry: one entry per stage, one call shape, real references, retry only where I/O is.

Also holds the rule that flows/ reaches stages through the registry, never through
`"package.module:function"` strings.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest

from prefsmith.flows.stages import STAGES, get_stage
from prefsmith.schemas.errors import ConfigError

FLOWS = Path(__file__).resolve().parents[2] / "flows"
# A dotted module path, a colon and a name inside a string literal: "prefsmith.x.y:fn".
STRING_TARGET = re.compile(r"""["'][A-Za-z_][\w.]*\.[\w]+:[A-Za-z_]\w*["']""")


def test_flows_hold_no_module_function_strings():
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(FLOWS.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if STRING_TARGET.search(line)
    ]
    assert found == []


def test_the_string_rule_catches_a_string_target():  # negative control of the test above
    assert STRING_TARGET.search('run_stage("x", "prefsmith.generation.prompts:load_prompts")')
    assert not STRING_TARGET.search('"generate-{side}"') and not STRING_TARGET.search('"a:b"')


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_has_the_one_call_shape(name):
    """`fn(inputs, *, config, out_dir)`, with `config` annotated as the registered config model."""
    stage = STAGES[name]
    params = list(inspect.signature(stage.fn).parameters.values())
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert [(p.name, p.kind) for p in params[1:]] == [
        ("config", inspect.Parameter.KEYWORD_ONLY),
        ("out_dir", inspect.Parameter.KEYWORD_ONLY),
    ]
    assert typing.get_type_hints(stage.fn)["config"] is stage.config
    assert stage.fn.__module__.startswith("prefsmith.") and stage.writes


@pytest.mark.parametrize("name", [n for n, s in STAGES.items() if s.shards is not None])
def test_sharded_stages_offer_plan_and_write_with_the_same_shape(name):
    shards = STAGES[name].shards
    assert list(inspect.signature(shards.plan).parameters) == ["inputs", "config", "out_dir"]
    assert list(inspect.signature(shards.write).parameters) == [
        "inputs",
        "config",
        "out_dir",
        "shards",
    ]


def test_only_the_stages_that_talk_to_engines_and_servers_retry():
    assert {name for name, stage in STAGES.items() if stage.retry} == {"generate", "score"}


def test_inputs_are_checked_by_name_in_one_line():
    score = get_stage("score")
    with pytest.raises(
        ConfigError, match="stage 'score' reads responses, prompts; missing: prompts"
    ):
        score.check_inputs({"responses": "r"})
    with pytest.raises(ConfigError, match="unknown: scores"):
        score.check_inputs({"responses": "r", "prompts": "p", "scores": "s"})
    compare = get_stage("compare")
    base = {k: "x" for k in compare.reads}
    assert set(compare.check_inputs({**base, "kl": None})) == set(compare.reads)  # optional
    combine = get_stage("combine")  # a family: scores:<scorer name>, any number of them
    assert set(combine.check_inputs({"scores:rm": "a", "scores:rule": "b"})) == {
        "scores:rm",
        "scores:rule",
    }
    with pytest.raises(ConfigError, match="reads scores:<name>; unknown: scores"):
        combine.check_inputs({"scores": "a"})
    with pytest.raises(ConfigError, match="unknown stage 'trian'"):
        get_stage("trian")


def test_isolation_follows_what_the_config_loads():
    from prefsmith.schemas.data_configs import ScoreConfig
    from prefsmith.schemas.eval_configs import LmEvalConfig

    score = get_stage("score")
    assert not score.isolate(ScoreConfig(kind="rule", rule="length_target"))
    assert score.isolate(ScoreConfig(kind="reward_model", model="/m"))
    assert not get_stage("lm_eval").isolate(LmEvalConfig(checkpoint="/c"))
    assert get_stage("lm_eval").isolate(LmEvalConfig(checkpoint="/c", tasks=["arc_easy"]))
