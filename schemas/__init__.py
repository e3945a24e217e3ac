"""Tables, configs, validation and stable ids: imported by every stage, importing no heavy library.

Nothing here may import torch, vllm or prefect (a test holds this).
"""
