"""Responses → scores: reward models, ArmoRM, vLLM pooling and rule scorers, sharded and resumable."""
