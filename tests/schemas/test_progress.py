"""The progress helper: the line's arithmetic, and how often it speaks when not in a terminal."""

from __future__ import annotations

import io
import logging

import pytest

from prefsmith.schemas.progress import INTERVAL_ENV, Progress, interval_s, progress_line, track


def test_the_line_is_count_percent_rate_and_eta():
    # 100 of 400 in 10 s: 10.0/s, 300 left at 10/s = 30 s.
    line = progress_line("generate", done=100, total=400, unit="prompt", elapsed=10.0)
    assert line == "generate: 100/400 prompts (25%), 10.0 prompt/s, eta 0:00:30"
    # 3700 s left is over an hour: h:mm:ss.
    line = progress_line("score", done=1, total=3701, unit="response", elapsed=1.0)
    assert line.endswith("1.0 response/s, eta 1:01:40")
    # done: no eta; no total: no percent.
    assert progress_line("kl", done=4, total=4, unit="batch", elapsed=2.0).endswith("2.0 batch/s")
    assert progress_line("kl", done=4, total=None, unit="batch", elapsed=2.0) == (
        "kl: 4 batches, 2.0 batch/s"
    )


@pytest.fixture
def captured():
    """prefsmith's lines into a string (not a terminal), as the CLI routes them in a pipe."""
    ours, stream = logging.getLogger("prefsmith"), io.StringIO()
    handler = logging.StreamHandler(stream)
    saved = (ours.handlers[:], ours.level, ours.propagate)
    ours.handlers[:] = [handler]
    ours.setLevel(logging.INFO)
    ours.propagate = False
    yield stream
    ours.handlers[:], ours.level, ours.propagate = saved


def test_in_a_pipe_a_zero_interval_logs_every_update_and_one_final_line(captured, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    with Progress(total=3, desc="generate", unit="prompt") as bar:
        for _ in range(3):
            bar.update(1)
    lines = captured.getvalue().splitlines()
    # updates 1 and 2 speak (3 is the total: the final line says it), then the final line
    assert [line.split(",")[0] for line in lines] == [
        "generate: 1/3 prompts (33%)",
        "generate: 2/3 prompts (67%)",
        "generate: 3/3 prompts (100%)",
    ]


def test_a_stage_shorter_than_the_interval_logs_no_progress_line(captured, monkeypatch):
    """Its own count line follows at once: a final "50/50 (100%)" line would repeat it."""
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert list(track(range(50), desc="KL log-probs", unit="batch")) == list(range(50))
    assert captured.getvalue() == ""


def test_no_work_no_line_and_a_bad_interval_keeps_the_default(captured, monkeypatch):
    with Progress(total=0, desc="score", unit="response"):
        pass
    assert captured.getvalue() == ""
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        assert interval_s() == 10.0
