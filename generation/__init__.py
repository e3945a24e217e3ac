"""Prompts → responses. Backends: vLLM offline, transformers, OpenAI-compatible servers."""
