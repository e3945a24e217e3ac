"""LoRA adapters (peft) and weights in the training dtype, on the tiny policy.

Oracles: the base model's own log-probs (the reference with the adapter disabled must equal
them), the DPO loss recomputed outside the trainer (it must fall), and base + adapter's greedy
tokens (the merged checkpoint must generate the same ones).
"""

from __future__ import annotations

import json

import pytest
import torch

from prefsmith.generation.checkpoints import STAMP, inference_folder, merged_folder
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.errors import ConfigError, InputError
from prefsmith.schemas.io import read_table, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS, PROMPTS
from prefsmith.schemas.train_configs import AdapterConfig, TrainConfig
from prefsmith.training.adapters import add_base_reference, with_adapter
from prefsmith.training.collate import PairCollator
from prefsmith.training.logprobs import completion_logps
from prefsmith.training.losses import dpo
from prefsmith.training.pair_batch import PairBatch
from prefsmith.training.policy import load_policy
from prefsmith.training.reference import sequence_logps
from prefsmith.training.render import render_pairs
from prefsmith.training.stage import train

BASE = {
    "max_length": 128,
    "max_prompt_length": 64,
    "per_device_train_batch_size": 4,
    "warmup_ratio": 0.0,
    "logging_steps": 5,
    "save_steps": 0,
    "seed": 0,
    "lr_scheduler_type": "constant",
}
LORA = {"r": 8, "alpha": 16.0, "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]}


def _config(tiny, **overrides) -> TrainConfig:
    return parse_config(TrainConfig, {"policy": str(tiny.policy), **BASE, **overrides})


def _examples(tokenizer, pairs) -> list[dict]:
    rows = read_table(pairs, PAIRS).to_pylist()
    rendered, _ = render_pairs(
        rows, tokenizer=tokenizer, end_ids=[tokenizer.eos_token_id], max_length=128,
        max_prompt_length=64,
    )  # fmt: skip
    return [
        {"prompt_ids": r.prompt_ids, "chosen_ids": r.chosen_ids, "rejected_ids": r.rejected_ids}
        for r in rendered
    ]


def _sequence_logps(model, examples, pad_id) -> torch.Tensor:
    sequences = [
        (e["prompt_ids"] + e[side], len(e["prompt_ids"]))
        for e in examples
        for side in ("chosen_ids", "rejected_ids")
    ]
    return torch.tensor(
        [lp for lp, _ in sequence_logps(model, sequences, token_budget=4096, pad_id=pad_id)]
    )


def _random_adapter(model):
    """An adapter whose update is not zero (peft starts B at 0: base + adapter == base)."""
    wrapped = with_adapter(model, AdapterConfig(**LORA), seed=0)
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(len(name)))
    return wrapped


def test_reference_with_the_adapter_disabled_equals_the_base(tiny, pairs_file):
    from transformers import AutoModelForCausalLM

    tokenizer, _ = load_policy(_config(tiny))
    examples, pad = _examples(tokenizer, pairs_file), tokenizer.pad_token_id
    base = AutoModelForCausalLM.from_pretrained(str(tiny.policy)).eval()
    expected = _sequence_logps(base, examples, pad)  # (2N,) chosen, rejected interleaved
    wrapped = _random_adapter(AutoModelForCausalLM.from_pretrained(str(tiny.policy)))
    add_base_reference(wrapped, examples, pad_id=pad, token_budget=4096)
    got = torch.tensor([[e["ref_chosen_logps"], e["ref_rejected_logps"]] for e in examples])
    assert torch.allclose(got.flatten(), expected, atol=1e-5)
    assert wrapped.training  # its mode is given back
    with_adapter_on = _sequence_logps(wrapped.eval(), examples, pad)
    assert (with_adapter_on - expected).abs().max() > 1e-2  # negative control: the adapter acts


def test_ranks_split_the_base_reference_batches_and_cover_each_once(tiny, pairs_file):
    """The parts of a pass split over 3 ranks: disjoint, together every sequence, and each
    value equal to the one-process pass's (same batches, so bit for bit)."""
    from prefsmith.training.reference import pair_sequences, sequence_logps

    tokenizer, model = load_policy(_config(tiny))
    examples = _examples(tokenizer, pairs_file)
    sequences = pair_sequences(
        (e["prompt_ids"], e["chosen_ids"], e["rejected_ids"]) for e in examples
    )
    args = {"token_budget": 64, "pad_id": tokenizer.pad_token_id}  # several batches
    whole = sequence_logps(model.eval(), sequences, **args)
    parts = [sequence_logps(model, sequences, **args, part=(r, 3)) for r in range(3)]
    for i, value in enumerate(whole):
        computed = [part[i] for part in parts if part[i] is not None]
        assert computed == [value], i
    assert all(any(v is not None for v in part) for part in parts)  # each rank had work


def _dpo_against_base(policy_dir, tiny, pairs) -> tuple[float, float]:
    """Mean DPO loss and accuracy of `policy_dir` with the base as the reference, by hand."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.policy))
    examples = _examples(tokenizer, pairs)
    batch = PairCollator(pad_token_id=tokenizer.pad_token_id)(examples)
    logps = {}
    for name, folder in (("policy", policy_dir), ("ref", tiny.policy)):
        model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        with torch.no_grad():
            logps[name], tokens = completion_logps(
                model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
            )
    chosen, rejected = logps["policy"].chunk(2)
    ref_chosen, ref_rejected = logps["ref"].chunk(2)
    n = len(examples)
    per_pair, metrics = dpo(
        PairBatch(
            policy_chosen_logps=chosen, policy_rejected_logps=rejected,
            chosen_tokens=tokens[:n].float(), rejected_tokens=tokens[n:].float(),
            ref_chosen_logps=ref_chosen, ref_rejected_logps=ref_rejected,
        )
    )  # fmt: skip
    return float(per_pair.mean()), float(metrics["rewards/accuracies"])


@pytest.fixture(scope="module")
def lora_run(tiny, tmp_path_factory, pair_rows):
    """A LoRA DPO run on pairs without reference columns (the base is the reference)."""
    folder = tmp_path_factory.mktemp("lora")
    pairs = write_table(pair_rows(16), folder / "pairs" / "pairs.parquet", PAIRS)
    adapter = {**LORA, "save_merged": True}
    config = _config(tiny, max_steps=30, learning_rate=5e-3, adapter=adapter)
    return pairs, train({"pairs": pairs}, config=config, out_dir=folder / "run")


def test_lora_training_lowers_the_loss_and_saves_the_adapter(tiny, lora_run):
    pairs, result = lora_run
    final = result.output
    assert (final / "adapter_config.json").is_file()
    assert (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists()  # the adapter, not a second base
    assert (final / "generation_config.json").is_file()  # the base's end-of-turn ids travel
    loss_after, accuracy_after = _dpo_against_base(final / "merged", tiny, pairs)
    assert loss_after < 0.5 * 0.693147 and accuracy_after >= 0.9  # from ln 2 and 0 at the start
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out, manifest.extra["global_step"]) == (16, 16, 30)
    assert manifest.extra["reference"] == "base, adapter disabled"
    adapter_bytes = (final / "adapter_model.safetensors").stat().st_size
    base_bytes = (tiny.policy / "model.safetensors").stat().st_size
    assert adapter_bytes < 0.5 * base_bytes


def test_merged_checkpoint_generates_the_greedy_tokens_of_base_plus_adapter(tiny, lora_run):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = lora_run[1].output
    tokenizer = AutoTokenizer.from_pretrained(str(final))
    prompts = [[{"role": "user", "content": f"tell me about {w}"}] for w in ("dogs", "sun", "red")]
    texts = [
        tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    outputs = {}
    for name, model in (
        ("adapter", AutoPeftModelForCausalLM.from_pretrained(str(final))),
        ("merged", AutoModelForCausalLM.from_pretrained(str(merged_folder(final)))),
        ("base", AutoModelForCausalLM.from_pretrained(str(tiny.policy))),
    ):
        model.eval()
        outputs[name] = [
            model.generate(torch.tensor([x]), max_new_tokens=12, do_sample=False)[0].tolist()
            for x in ids
        ]
    assert outputs["merged"] == outputs["adapter"]
    assert outputs["merged"] != outputs["base"]  # negative control: training changed the answers


def test_generate_on_an_adapter_checkpoint_samples_from_its_merged_model(tiny, lora_run, tmp_path):
    from prefsmith.generation.stage import generate
    from prefsmith.schemas.data_configs import GenerateConfig
    from prefsmith.schemas.ids import model_revision
    from prefsmith.schemas.tables import RESPONSES

    prompts = [[{"role": "user", "content": f"say {w}"}] for w in ("one", "two")]
    table = write_table(
        [{"prompt_id": f"p{i}", "messages": m, "source": "t", "metadata": "{}"}
         for i, m in enumerate(prompts)],
        tmp_path / "prompts.parquet", PROMPTS,
    )  # fmt: skip
    final = lora_run[1].output
    config = GenerateConfig(
        model=str(final), backend="transformers", sampling={"n": 1, "max_new_tokens": 8}
    )
    result = generate({"prompts": table}, config=config, out_dir=tmp_path / "gen")
    rows = read_table(result.output, RESPONSES).to_pylist()
    merged = final / "merged"
    assert {r["generator"] for r in rows} == {f"merged@{model_revision(merged)}"}
    assert Manifest.read(result.manifest).config["model"] == str(merged)


def test_merged_folder_is_reused_verified_and_rebuilt(lora_run):
    final = lora_run[1].output
    merged = merged_folder(final)
    stamp = json.loads((merged / STAMP).read_text())
    assert set(stamp) == {"adapter_revision", "base_revision", "model_files"}
    before = (merged / "model.safetensors").stat().st_mtime_ns
    assert inference_folder(str(final)) == str(merged)  # reused: not rewritten
    assert (merged / "model.safetensors").stat().st_mtime_ns == before
    good = (merged / "model.safetensors").read_bytes()
    (merged / "model.safetensors").write_bytes(good[:-64] + bytes(64))  # a torn copy
    merged_folder(final)
    assert (merged / "model.safetensors").read_bytes() == good  # rebuilt, same bytes
    assert inference_folder(str(lora_run[0])) == str(lora_run[0])  # not an adapter: as given


def test_an_adapter_whose_base_moved_stops_with_one_line(lora_run, tmp_path):
    import shutil

    copy = tmp_path / "final"
    shutil.copytree(lora_run[1].output, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (copy / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="base_model_name_or_path .*gone.* is not a folder") as e:
        merged_folder(copy)
    assert "\n" not in str(e.value)


def test_4bit_is_refused_without_a_gpu_before_any_model_loads(tiny, pairs_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: 4-bit loading is allowed here")
    config = _config(tiny, max_steps=1, adapter={**LORA, "load_in_4bit": True})
    with pytest.raises(ConfigError, match=r"load_in_4bit: .*needs a CUDA GPU") as e:
        train({"pairs": pairs_file}, config=config, out_dir=tmp_path / "run")
    assert "\n" not in str(e.value) and not (tmp_path / "run" / "final").exists()


def test_bf16_weights_take_half_the_memory_and_still_learn(tiny, tmp_path, pair_rows):
    pairs = write_table(pair_rows(16), tmp_path / "pairs.parquet", PAIRS)

    def weight_bytes(model) -> int:
        return sum(p.numel() * p.element_size() for p in model.parameters())

    _, full = load_policy(_config(tiny))
    _, half = load_policy(_config(tiny, dtype="bfloat16"))
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert weight_bytes(half) * 2 == weight_bytes(full)
    loss = [{"name": "simpo", "params": {"beta": 2.0}}]
    config = _config(tiny, dtype="bfloat16", loss=loss, max_steps=20, learning_rate=1e-3)
    result = train({"pairs": pairs}, config=config, out_dir=tmp_path / "run")
    curve = json.loads((result.output / "prefsmith_train.json").read_text())["loss_curve"]
    assert curve[-1][1] < curve[0][1]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"dtype": "bfloat16", "deepspeed": "zero2"}, "dtype: bfloat16 with deepspeed"),
        ({"dtype": "float16", "bf16": True}, "float16 weights with bf16 autocast"),
        ({"adapter": {"r": 0}}, "adapter.r"),
        ({"adapter": {"kind": "prefix"}}, "adapter.kind"),
    ],
)
def test_dtype_and_adapter_configs_are_checked_at_load(tiny, overrides, match):
    with pytest.raises(ConfigError, match=match):
        _config(tiny, **overrides)
