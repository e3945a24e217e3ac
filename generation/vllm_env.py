"""Environment vLLM needs on a machine without a CUDA device (shared/ENVIRONMENT.md).

vLLM reads these variables when it is imported, so `configure_cpu_defaults()` must run before the
first `import vllm`. It only fills in variables that are unset: a user's own values always win.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

CPU_DEFAULTS: dict[str, str] = {
    # Without it start-up fails: vLLM sees only one NUMA node's memory for the KV cache (GiB).
    "VLLM_CPU_KVCACHE_SPACE": "1",
    # In-process engine: 3-7 s start-up, no spawn guard needed in scripts and tests.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    # The default 'auto' thread binding was 20x slower on a shared 2-core machine.
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def has_cuda() -> bool:
    """Whether torch sees a CUDA device (False when torch is a CPU build)."""
    import torch

    return bool(torch.cuda.is_available())


def configure_cpu_defaults() -> dict[str, str]:
    """Set the vLLM-on-CPU variables that are unset when no CUDA device is present.

    Returns the variables this call set (empty on a GPU machine or when all were already set).
    """
    if has_cuda():
        return {}
    applied = {}
    for key, value in CPU_DEFAULTS.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    if applied:
        logger.debug("no CUDA device: vLLM CPU defaults %s", applied)
    return applied
