"""The LLM-as-judge scorer (prefsmith.scoring.llm_judge).

Against a real vLLM OpenAI-compatible server on 127.0.0.1 (the tiny policy as the judge, greedy),
through the real score stage, pairwise: every non-anchor response is asked in both orders (the
server's access log counts the requests), each score is the mean of its two verdicts, the
manifest's position bias equals the share of verdicts that picked the first reply, unparseable
replies are quarantined with the judge's raw text, and the counts reconcile.

The tiny judge's replies cannot be chosen, so the parsing rules (pointwise numbers, bounds, a
judge that always answers "A", questions too long for the context) are checked with an httpx
MockTransport standing in for the server: a mock, named as such, for replies no real tiny model
gives on demand.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "generation"))  # vllm_server
from vllm_server import answered_requests, free_port, start_server, stop, wait_healthy

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PROMPTS, QUARANTINE, RESPONSES, SCORES
from prefsmith.scoring.batching import ScoreRequest
from prefsmith.scoring.llm_judge import JudgeScorer
from prefsmith.scoring.stage import score

# Replies of the tiny judge to "{{ second }}" continue the second reply's text; these texts
# give some "story jum", some "story gree" and one "s green " (no match) on this machine.
TEXTS = [
    "write a story about a house and a cat",
    "what color is the stone ?",
    "the small green thing",
    "count to nine",
    "tell me about the rain",
    "count to eight",
]
PATTERN = r"^(?:story|stone|star) (jum|gree)"


def tables(root: Path) -> dict[str, Path]:
    """4 prompts x 3 responses (sample 0 of each prompt is its anchor)."""
    prompts, responses = [], []
    for p in range(4):
        pid = f"p{p}"
        prompts.append(
            {"prompt_id": pid, "messages": [{"role": "user", "content": f"question {p}"}],
             "source": "t", "metadata": "{}"}
        )  # fmt: skip
        for k in range(3):
            responses.append(
                {"prompt_id": pid, "response_id": f"{pid}-{k}", "sample_idx": k,
                 "response": TEXTS[(p + 2 * k) % len(TEXTS)], "n_tokens": 5,
                 "finish_reason": "stop", "generator": "g", "gen_config_hash": "h"}
            )  # fmt: skip
    return {
        "prompts": write_table(prompts, root / "prompts.parquet", PROMPTS),
        "responses": write_table(responses, root / "responses.parquet", RESPONSES),
    }


def judge_config(model: Path, servers: list[str], **judge) -> ScoreConfig:
    return ScoreConfig(
        kind="llm_judge",
        model=str(model),
        shard_size=4,
        judge={"servers": servers, "max_new_tokens": 6, **judge},
    )


@pytest.fixture(scope="module")
def judge_server(tiny, tmp_path_factory):
    log = tmp_path_factory.mktemp("judge") / "server.log"
    port = free_port()
    process = start_server(tiny.policy, port, log)
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}", log, timeout_s=300)
        yield f"http://127.0.0.1:{port}/v1", log
    finally:
        stop(process)


@pytest.mark.slow
def test_pairwise_judge_on_a_real_server_asks_both_orders_and_measures_position_bias(
    tiny, judge_server, tmp_path
):
    url, log = judge_server
    config = judge_config(
        tiny.policy, [url], mode="pairwise", template="{{ second }}", pattern=PATTERN,
        choices=("jum", "gree"),
    )  # fmt: skip
    inputs = tables(tmp_path)
    before = answered_requests(log)
    result = score(inputs, config=config, out_dir=tmp_path / "out")
    assert answered_requests(log) - before == 2 * 8  # 8 non-anchor responses, both orders

    manifest = Manifest.read(result.manifest)
    assert manifest.rows_in == 12 == manifest.rows_out + sum(manifest.dropped.values())
    assert set(manifest.dropped) <= {"unparseable_judgement"}
    rows = read_frame(result.output, SCORES)
    judged = []
    for row in rows.iter_rows(named=True):
        values = {o["name"]: o["value"] for o in row["objectives"]}
        if row["response_id"].endswith("-0"):
            assert row["score"] == 0.5 and values == {}  # the anchor is not asked
            continue
        ab, ba = values["order/ab"], values["order/ba"]
        assert row["score"] == (ab + ba) / 2
        assert values["first_preferred"] == (ab + (1 - ba)) / 2
        judged.append(values["first_preferred"])
    facts = manifest.extra["judge"]
    # the tiny judge reads some replies and not others (5 and 3 of 8 here): both paths ran
    assert judged and manifest.dropped.get("unparseable_judgement", 0) >= 1
    assert facts["pairwise_judged"] == len(judged)
    assert facts["first_position_rate"] == pytest.approx(sum(judged) / len(judged))
    quarantine = read_frame(result.quarantine, QUARANTINE)
    assert quarantine.height == manifest.dropped.get("unparseable_judgement", 0)
    for raw in quarantine["raw"]:
        replies = re.findall(r"response as [AB]: '(.*)'", raw)
        assert len(replies) == 2 and not all(re.search(PATTERN, r) for r in replies)


def fake_judge(reply_for, tokenizer):
    """An httpx MockTransport: the completion is `reply_for(question text)`, encoded with the
    tiny tokenizer (the backend decodes the returned ids with it)."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        question = tokenizer.decode(body["prompt"])
        ids = tokenizer(reply_for(question), add_special_tokens=False)["input_ids"]
        choice = {"index": 0, "text": "", "token_ids": ids, "finish_reason": "stop"}
        return httpx.Response(200, json={"choices": [choice]})

    return httpx.MockTransport(handle)


def requests(n: int = 3) -> list[ScoreRequest]:
    return [
        ScoreRequest(f"p-{k}", "p", [{"role": "user", "content": "q"}], f"reply {k}",
                     anchor_id="p-0", anchor="reply 0")
        for k in range(n)
    ]  # fmt: skip


@pytest.fixture
def scorer(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.policy))

    def make(reply_for, **judge) -> JudgeScorer:
        config = judge_config(tiny.policy, ["http://judge/v1"], **judge)
        return JudgeScorer(config, transport=fake_judge(reply_for, tokenizer))

    return make


def test_pointwise_parses_the_number_and_quarantines_the_rest(scorer):
    answers = {"reply 0": "7", "reply 1": "about 9 i think", "reply 2": "great"}
    judge = scorer(
        lambda q: next(v for k, v in answers.items() if k in q),
        template="rate {{ response }}", min_score=1, max_score=8,
    )  # fmt: skip
    outcomes = judge(requests())
    assert outcomes[0].score == 7.0
    assert [o.reason for o in outcomes[1:]] == ["unparseable_judgement"] * 2  # 9 > max, no number
    assert outcomes[2].raw == "great"


def test_a_judge_that_always_says_a_is_all_position_bias(scorer):
    judge = scorer(lambda q: "A", mode="pairwise")
    outcomes = judge(requests())
    assert [o.score for o in outcomes] == [0.5, 0.5, 0.5]  # both orders cancel
    assert dict(outcomes[1].objectives)["first_preferred"] == 1.0


def test_a_question_too_long_for_the_judge_is_quarantined_unasked(scorer):
    asked = []
    judge = scorer(lambda q: asked.append(q) or "5", max_model_len=12)
    (outcome,) = judge(requests(1))
    assert outcome.reason == "judge_prompt_too_long" and asked == []
