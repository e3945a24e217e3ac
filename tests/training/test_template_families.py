"""The completion boundary over five real chat templates: TRL parity, reference and train.

For Llama-3-Instruct, Qwen2.5-Instruct, Gemma-2-it, Mistral-Instruct-v0.3 and Phi-3-mini (their
published templates and special tokens, tests/data/chat_templates), a completion is what the
template writes for the assistant turn through the end-of-turn token generation stops on. TRL
1.16's DPOTrainer tokenizes the same rows as the independent oracle: its prompt ids must equal
ours and its completion ids, cut at the first end-of-turn token, must equal ours; what it trains
after that token (Gemma's and Qwen's newline, Phi-3's `\\n<|endoftext|>`) is what prefsmith leaves
out. The generation cells are in tests/generation/test_template_families_generate.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from template_families import FAMILIES, build_family, build_tokenizer

from prefsmith.generation.turn_end import cut_at_turn_end, end_of_turn_ids
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.ids import pair_id, prompt_id
from prefsmith.schemas.io import read_table, write_table
from prefsmith.schemas.tables import PAIRS, PAIRS_WITH_REFERENCE
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig
from prefsmith.training.reference import reference_pass
from prefsmith.training.render import render_pairs
from prefsmith.training.stage import train

trl = pytest.importorskip("trl")

USER = {"role": "user", "content": "tell me about the cat"}
SYSTEM = {"role": "system", "content": "you are helpful"}
CONVERSATIONS = {
    "single": [USER],
    "multi_turn": [USER, {"role": "assistant", "content": "the cat is red"}, USER],
    "system": [SYSTEM, USER],
}
# (family, conversation) -> the stated refusal; every other cell must render
REFUSED = {
    ("gemma2", "system"): "template_error",  # Gemma-2's template raises on a system turn
    ("mistral_v03", "system"): "template_not_prefix_stable",  # system kept only before last user
}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root) for name in FAMILIES}


def _rows() -> list[dict]:
    rows = []
    for index, (name, messages) in enumerate(CONVERSATIONS.items()):
        ids = (f"{name}-0", f"{name}-1")
        rows.append(
            {
                "pair_id": pair_id(*ids),
                "prompt_id": prompt_id(messages),
                "messages": messages,
                "chosen": "the dog runs fast",
                "rejected": f"a red stone {index}",
                "chosen_response_id": ids[0],
                "rejected_response_id": ids[1],
                "score_chosen": 2.0 + index,
                "score_rejected": 0.5,
                "margin": 1.5 + index,
                "strategy": "best_vs_worst",
                "scorer": "test-rule",
                "conversation": name,
            }
        )
    return rows


def _tokenizer(family):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(family.folder))


def _trl_ids(family, tokenizer, rows, tmp_path):
    """TRL 1.16's own tokenization of the rows (its DPOTrainer's prepared train dataset)."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    data = datasets.Dataset.from_list(
        [
            {
                "prompt": r["messages"],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in rows
        ]
    )
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), report_to=[], max_length=None, use_cpu=True, bf16=False
    )
    policy = AutoModelForCausalLM.from_pretrained(str(family.folder))
    trainer = DPOTrainer(model=policy, args=args, train_dataset=data, processing_class=tokenizer)
    return list(trainer.train_dataset)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_completions_equal_trl_up_to_the_end_of_turn(families, name, tmp_path):
    family = families[name]
    tokenizer = _tokenizer(family)
    end_ids = end_of_turn_ids(family.folder, tokenizer)
    end = tokenizer.convert_tokens_to_ids(family.end_of_turn)
    assert end in end_ids
    rows = _rows()
    ours, rejected = render_pairs(
        rows, tokenizer=tokenizer, end_ids=end_ids, max_length=512, max_prompt_length=256
    )
    refused = {r.row_ref: r.reason for r in rejected}
    kept = [(row, mine) for row, mine in zip(rows, ours, strict=True) if mine is not None]
    theirs = _trl_ids(family, tokenizer, [row for row, _ in kept], tmp_path)
    for row in rows:
        expected = REFUSED.get((name, row["conversation"]))
        assert refused.get(row["pair_id"]) == expected, (name, row["conversation"])
    for (row, mine), their in zip(kept, theirs, strict=True):
        assert mine.prompt_ids == their["prompt_ids"], row["conversation"]
        for side in ("chosen", "rejected"):
            completion = getattr(mine, f"{side}_ids")
            assert completion == cut_at_turn_end(their[f"{side}_ids"], [end], append=-1)
            assert completion[-1] == end and completion.count(end) == 1
            assert not set(completion[:-1]) & set(end_ids)


@pytest.mark.parametrize("name", ["gemma2", "phi3"])
def test_the_tokenizer_eos_alone_would_train_tokens_never_generated(families, name):
    """Negative control: the old rule (cut at the tokenizer's EOS) trains `<end_of_turn>`, `\\n`,
    `<eos>` for Gemma-2 and `<|end|>`, `\\n`, `<|endoftext|>` for Phi-3."""
    family = families[name]
    tokenizer = _tokenizer(family)
    rows = _rows()[:1]
    (old,), _ = render_pairs(
        rows,
        tokenizer=tokenizer,
        end_ids=[tokenizer.eos_token_id],
        max_length=512,
        max_prompt_length=256,
    )
    (new,), _ = render_pairs(
        rows,
        tokenizer=tokenizer,
        end_ids=end_of_turn_ids(family.folder, tokenizer),
        max_length=512,
        max_prompt_length=256,
    )
    tail = tokenizer.convert_ids_to_tokens(old.chosen_ids[len(new.chosen_ids) - 1 :])
    assert tail == [family.end_of_turn, "\n", tokenizer.eos_token]


@pytest.fixture(scope="module")
def family_pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("family-pairs")
    rows = [{k: v for k, v in r.items() if k != "conversation"} for r in _rows()]
    return write_table(rows, folder / "pairs.parquet", PAIRS), rows


@pytest.mark.parametrize("name", list(FAMILIES))
def test_reference_and_two_training_steps_per_family(families, family_pairs, name, tmp_path):
    """Each family runs `reference` then 2 DPO steps; refused rows are quarantined, never fatal."""
    family, (pairs, rows) = families[name], family_pairs
    lengths = {"max_length": 256, "max_prompt_length": 128}
    reference = reference_pass(
        {"pairs": pairs},
        config=parse_config(ReferenceConfig, {"model": str(family.folder), **lengths}),
        out_dir=tmp_path / "reference",
    )
    refused = [reason for (family_name, _), reason in REFUSED.items() if family_name == name]
    assert read_table(reference.output, PAIRS_WITH_REFERENCE).num_rows == len(rows) - len(refused)
    manifest = json.loads(Path(reference.manifest).read_text())
    assert manifest["dropped"] == {reason: 1 for reason in refused}
    config = {
        "policy": str(family.folder),
        "loss": [{"name": "dpo", "params": {"beta": 0.1}}],
        "learning_rate": 1e-3,
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "save_steps": 0,
        **lengths,
    }
    result = train(
        {"pairs": reference.output},
        config=parse_config(TrainConfig, config),
        out_dir=tmp_path / "train",
    )
    assert (Path(result.output) / "model.safetensors").exists()
    trained = json.loads(Path(result.manifest).read_text())
    assert trained["extra"]["global_step"] == 2
    assert trained["rows_out"] == len(rows) - len(refused)


def test_tokens_merging_across_the_boundary_keep_the_generation_prompt(tmp_path):
    """A GPT-2-regex byte-level tokenizer splits the prompt's final "\\n\\n" differently once
    text follows. TRL then shortens the prompt (its documented warning); prefsmith keeps the
    prompt ids generation sampled from and tokenizes the text after it: same text, same end."""
    from prefsmith.generation.render import render_prompt_ids

    tokenizer = build_tokenizer("llama3", tmp_path / "tok", split_regex=None)
    family = type("F", (), {"folder": tmp_path / "tok"})
    _save_policy_for(tokenizer, tmp_path / "tok")
    row = _rows()[0]
    end_ids = end_of_turn_ids(family.folder, tokenizer)
    (mine,), _ = render_pairs(
        [row], tokenizer=tokenizer, end_ids=end_ids, max_length=512, max_prompt_length=256
    )
    (their,) = _trl_ids(family, tokenizer, [row], tmp_path)
    assert mine.prompt_ids == render_prompt_ids(row["messages"], tokenizer=tokenizer)
    assert len(their["prompt_ids"]) < len(mine.prompt_ids)  # TRL left the "\\n\\n" out
    theirs = their["prompt_ids"] + cut_at_turn_end(their["chosen_ids"], end_ids, append=-1)
    assert tokenizer.decode(mine.prompt_ids + mine.chosen_ids) == tokenizer.decode(theirs)


def _save_policy_for(tokenizer, folder: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
