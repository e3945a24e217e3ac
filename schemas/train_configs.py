"""Configs of the reference pass and the trainer. Every knob says why; no torch here.

Loss terms and their typed hyperparameters (defaults, ranges, paper symbols) are declared once in
`prefsmith.schemas.losses`, so a misspelt or out-of-range hyperparameter stops the run when the
config is loaded, before a model is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from prefsmith.schemas.config_base import StrictModel
from prefsmith.schemas.data_configs import Dtype
from prefsmith.schemas.losses import DPOTerm, LossParams, LossTerm

DEEPSPEED_PRESETS = ("zero2", "zero3")
WeightsDtype = Literal["float32", "bfloat16", "float16"]


class AdapterConfig(StrictModel):
    """A LoRA adapter trained over the frozen policy (peft; Hu et al. 2021, arXiv:2106.09685).

    The base weights never change, so the base *is* the reference: pairs without reference
    log-probs get them in the train stage from the same model with its adapter disabled, and no
    second copy is loaded. `final/` holds the adapter (prefsmith.training.adapters).
    """

    kind: Literal["lora"] = Field("lora", description="the adapter family (peft LoraConfig)")
    r: int = Field(16, ge=1, description="rank of each low-rank update B·A")
    alpha: float = Field(32.0, gt=0.0, description="LoRA alpha: the update is scaled by alpha / r")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapter's input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="module names to adapt (e.g. [q_proj, v_proj]); all-linear: every linear "
        "layer but the LM head",
    )
    save_merged: bool = Field(
        False,
        description="also write final/merged/: base + adapter merged into one plain model "
        "(what vLLM and the next stages load; made on first use when false)",
    )
    load_in_4bit: bool = Field(
        False,
        description="QLoRA: load the frozen base in 4-bit NF4 (bitsandbytes, CUDA only; refused "
        "on a machine without a GPU)",
    )
    reference_token_budget: int = Field(
        16384,
        ge=1,
        description="padded tokens per batch of the base reference pass the train stage runs on "
        "pairs without reference log-probs (ranks split its batches)",
    )


class ReferenceConfig(StrictModel):
    model: str = Field(description="reference model folder (usually the policy before training)")
    revision: str | None = Field(
        None, description="recorded in `ref_model` and the cache key; default: hash of the folder"
    )
    max_length: int = Field(
        1024,
        ge=8,
        description="prompt + completion tokens; must equal train's (a pipeline config takes "
        "train's; the trainer checks the manifest)",
    )
    max_prompt_length: int = Field(
        512,
        ge=1,
        description="prompt tokens kept (from the left) when too long; must equal train's",
    )
    token_budget: int = Field(
        16384, ge=16, description="padded tokens per forward (rows x longest)"
    )
    dtype: Dtype = Field("auto", description="weights dtype; 'auto' keeps the checkpoint's")
    trust_remote_code: bool = Field(
        False, description="opt in per model; runs the model's own code"
    )

    @model_validator(mode="after")
    def _prompt_fits(self) -> ReferenceConfig:
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be < max_length "
                f"({self.max_length}) so every completion keeps at least one token"
            )
        return self


LOOPBACK = ("127.", "localhost", "::1")


class LaunchConfig(StrictModel):
    """How `prefsmith.training.launch.launch_train` starts the train stage across processes and nodes.

    torchrun is started once per node (each with its `node_rank`); the deepspeed launcher is
    started once, on the head node, and reaches the other hosts of `hostfile` over ssh (pdsh).
    """

    launcher: Literal["torchrun", "deepspeed"] = Field(
        "torchrun",
        description="torchrun: `python -m torch.distributed.run`, run on every node; deepspeed: "
        "DeepSpeed's runner, run on the head node only, starts `hostfile`'s hosts over ssh",
    )
    nproc_per_node: int = Field(1, ge=1, description="processes per node: one per GPU (CPU: gloo)")
    nnodes: int = Field(1, ge=1, description="nodes taking part (global ranks = nnodes x nproc)")
    node_rank: int = Field(
        0, ge=0, description="torchrun: this node's index in [0, nnodes); node 0 writes the outputs"
    )
    master_addr: str | None = Field(
        None,
        description="address of node 0 that every node can reach; None: 127.0.0.1 on one node, "
        "the first hostfile host (deepspeed launcher)",
    )
    master_port: int | None = Field(
        None,
        ge=1024,
        le=65535,
        description="rendezvous TCP port on node 0; None: a free port (one node), 29500 (deepspeed)",
    )
    hostfile: str | None = Field(
        None, description="deepspeed launcher: MPI-style host list, one `host slots=N` per line"
    )

    @model_validator(mode="after")
    def _consistent(self) -> LaunchConfig:
        problems = []
        if self.hostfile is not None and self.launcher != "deepspeed":
            problems.append(
                "hostfile: only the deepspeed launcher reads a hostfile; set launcher: "
                "deepspeed, or give torchrun nnodes/node_rank/master_addr/master_port"
            )
        if self.node_rank >= self.nnodes:
            problems.append(f"node_rank: must be < nnodes ({self.nnodes}), got {self.node_rank}")
        if self.launcher == "deepspeed" and self.node_rank != 0:
            problems.append(
                "node_rank: the deepspeed launcher starts every node from the head "
                "node; leave node_rank 0"
            )
        if self.launcher == "deepspeed" and self.nnodes > 1 and self.hostfile is None:
            problems.append(
                f"hostfile: nnodes={self.nnodes} with the deepspeed launcher needs a "
                "hostfile naming the hosts"
            )
        if self.launcher == "torchrun" and self.nnodes > 1:
            if self.master_addr is None or self.master_addr.startswith(LOOPBACK):
                problems.append(
                    f"master_addr: nnodes={self.nnodes} needs node 0's address that "
                    f"every node can reach, got {self.master_addr!r}"
                )
            if self.master_port is None:
                problems.append("master_port: nnodes > 1 needs one fixed port for all nodes")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def world_size(self) -> int:
        """Processes in the whole job."""
        return self.nproc_per_node * self.nnodes


class TrainConfig(StrictModel):
    policy: str = Field(description="policy model folder (with its tokenizer and chat template)")
    loss: list[LossTerm] = Field(
        default_factory=lambda: [DPOTerm()],
        description="terms summed per pair: [{name, weight, params}], each loss at most once; "
        "params are typed per loss (prefsmith.schemas.losses)",
    )
    nll_weight: float = Field(0.0, ge=0.0, description="weight of the chosen-response NLL term")
    max_length: int = Field(
        1024,
        ge=8,
        description="prompt + completion tokens per sequence; also the reference pass's and "
        "the KL estimate's in a pipeline config",
    )
    max_prompt_length: int = Field(
        512, ge=1, description="prompt tokens kept (from the left, BOS kept) when too long"
    )
    learning_rate: float = Field(5e-7, gt=0.0, description="peak AdamW learning rate")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="HF scheduler; 'constant' makes a stop-and-resume match exactly"
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW decoupled weight decay")
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient clipping; 0 turns it off")
    max_steps: int = Field(-1, description="optimizer steps; -1 means use num_train_epochs")
    num_train_epochs: float = Field(
        1.0, gt=0.0, description="passes over the pairs (if max_steps=-1)"
    )
    per_device_train_batch_size: int = Field(
        4, ge=1, description="pairs per forward (2x sequences: chosen and rejected)"
    )
    gradient_accumulation_steps: int = Field(1, ge=1, description="forwards per optimizer step")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of steps warming up")
    seed: int = Field(0, description="model init of new heads, data order, dropout")
    group_by_length: bool = Field(
        True, description="batch pairs of similar length (less padding); batches still shuffled"
    )
    logging_steps: int = Field(10, ge=1, description="log loss and metrics every N steps")
    save_steps: int = Field(500, ge=0, description="checkpoint every N steps; 0: only at the end")
    save_total_limit: int | None = Field(2, ge=1, description="checkpoints kept; None keeps all")
    report_to: list[str] = Field(
        default_factory=lambda: ["none"],
        description="HF integrations: none, tensorboard, wandb, ...",
    )
    deepspeed: str | None = Field(
        None, description="'zero2', 'zero3' (shipped configs) or a DeepSpeed JSON path; None: off"
    )
    bf16: bool = Field(False, description="bf16 autocast (weights stay in `dtype`)")
    dtype: WeightsDtype = Field(
        "float32",
        description="dtype the policy's weights load in without DeepSpeed (bfloat16: half the "
        "weight memory); under DeepSpeed the engine's own mixed precision decides (bf16: true)",
    )
    adapter: AdapterConfig | None = Field(
        None, description="train a LoRA adapter instead of every weight; None: full fine-tuning"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations: less memory")
    pair_layout: Literal["shared_prompt", "packed", "concatenated"] = Field(
        "shared_prompt",
        description="shared_prompt: one row [prompt|chosen|rejected] per pair with a block mask "
        "(prompt computed once, exact); packed: several such blocks per row, block-diagonal "
        "(no padding for short pairs); concatenated: 2B rows [chosen; rejected], plain causal",
    )
    pack_tokens: int | None = Field(
        None,
        ge=8,
        description="packed layout: tokens per row; None: the batch's longest pair (rows never "
        "wider than unpacked; larger values pack more at a quadratic attention cost per row)",
    )
    logprob_chunk_tokens: int = Field(
        2048, ge=1, description="completion positions per LM-head chunk (bounds the logits memory)"
    )
    trust_remote_code: bool = Field(
        False, description="opt in per model; runs the model's own code"
    )
    resume: bool | str = Field(
        False, description="true: from the last checkpoint in out_dir; a path: from that checkpoint"
    )
    launch: LaunchConfig | None = Field(
        None,
        description="start across processes/nodes (prefsmith.training.launch); None: one process, in the "
        "caller's process unless `deepspeed` is set (then torchrun with one process)",
    )

    @field_validator("deepspeed")
    @classmethod
    def _deepspeed_known(cls, value: str | None) -> str | None:
        if value is None or value in DEEPSPEED_PRESETS:
            return value
        if not value.endswith(".json") or not Path(value).is_file():
            raise ValueError(f"must be 'zero2', 'zero3' or an existing .json file, got {value!r}")
        return value

    @field_validator("loss")
    @classmethod
    def _loss_terms_unique(cls, value: list[LossTerm]) -> list[LossTerm]:
        names = [term.name for term in value]
        if len(set(names)) != len(names):
            raise ValueError(f"each loss may appear once, got {names}; merge the repeated terms")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be < max_length "
                f"({self.max_length}) so every completion keeps at least one token"
            )
        if not self.loss and self.nll_weight == 0.0:
            raise ValueError("nothing to train: give at least one loss term or nll_weight > 0")
        if self.dtype != "float32" and self.deepspeed is not None:
            raise ValueError(
                f"dtype: {self.dtype} with deepspeed: the engine keeps float32 master weights and "
                "casts them itself; set bf16: true and leave dtype float32"
            )
        if self.dtype == "float16" and self.bf16:
            raise ValueError("dtype: float16 weights with bf16 autocast; pick one of the two")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be -1 (use epochs) or >= 1, got {self.max_steps}")
        return self

    def terms(self) -> list[tuple[str, float, dict[str, Any]]]:
        """The loss terms in `prefsmith.training.losses.combined_loss`'s form, every
        hyperparameter spelled out (unset ones at their `prefsmith.schemas.losses` default)."""
        return [(term.name, term.weight, term.params.model_dump()) for term in self.loss]

    def loss_params(self, name: str) -> LossParams | None:
        """The hyperparameters of the loss term `name`, or None when the config has no such term."""
        return next((term.params for term in self.loss if term.name == name), None)
