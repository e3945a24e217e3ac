"""vLLM's CPU defaults are filled in only where unset, and only without a CUDA device."""

from __future__ import annotations

import os

from prefsmith.generation import vllm_env


def test_cpu_defaults_fill_only_unset_variables(monkeypatch):
    monkeypatch.setattr(vllm_env, "has_cuda", lambda: False)
    for key in vllm_env.CPU_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")  # the user's own value wins
    applied = vllm_env.configure_cpu_defaults()
    assert "VLLM_CPU_KVCACHE_SPACE" not in applied and os.environ["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert applied == {
        k: v for k, v in vllm_env.CPU_DEFAULTS.items() if k != "VLLM_CPU_KVCACHE_SPACE"
    }
    assert all(os.environ[k] == v for k, v in applied.items())
    assert vllm_env.configure_cpu_defaults() == {}  # idempotent


def test_nothing_is_set_on_a_cuda_machine(monkeypatch):
    monkeypatch.setattr(vllm_env, "has_cuda", lambda: True)
    for key in vllm_env.CPU_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    assert vllm_env.configure_cpu_defaults() == {}
    assert not any(key in os.environ for key in vllm_env.CPU_DEFAULTS)
