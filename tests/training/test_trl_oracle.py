"""External oracle: with all weights 1, our `dpo` loss and its gradient on the tiny policy equal
TRL 1.16 `DPOTrainer.compute_loss` and its gradient within 1e-5, on the same 4 pairs and tokens.

Tokenization: TRL renders the conversation with the same chat template; its completion also
trains the template's newline after EOS, which prefsmith leaves out (nothing follows EOS at
inference). The test checks exactly that difference on TRL's own tokenization, then gives TRL
prefsmith's token ids so that both sides score the same tokens.
"""

from __future__ import annotations

import pytest
import torch

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PAIRS
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig
from prefsmith.training.reference import reference_pass
from prefsmith.training.stage import build_examples, make_trainer, read_pairs, training_arguments

trl = pytest.importorskip("trl")


@pytest.fixture
def setup(tiny, tmp_path, pair_rows):
    """4 pairs, a reference model that differs from the policy, our reference pass over them."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_pretrained(str(tiny.policy))
    with torch.no_grad():
        for param in ref.parameters():
            param.add_(0.02 * torch.randn_like(param))
    ref.save_pretrained(str(tmp_path / "ref"))
    ref_config = {"model": str(tmp_path / "ref"), "max_length": 128, "max_prompt_length": 64}
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (tmp_path / "ref" / name).write_bytes((tiny.policy / name).read_bytes())
    pairs = write_table(pair_rows(4, seed=11), tmp_path / "pairs.parquet", PAIRS)
    result = reference_pass(
        {"pairs": pairs}, config=parse_config(ReferenceConfig, ref_config), out_dir=tmp_path / "r"
    )
    return pairs, result.output, tmp_path / "ref"


def _trl_trainer(policy, ref_model, tokenizer, dataset, tmp_path, *, keep_ids: bool):
    from trl import DPOConfig, DPOTrainer

    class GivenIds(DPOTrainer):
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset  # already prompt_ids / chosen_ids / rejected_ids

    # TRL turns bf16 autocast on by default (even on CPU): the oracle compares in float32.
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"),
        beta=0.1,
        per_device_train_batch_size=4,
        report_to=[],
        max_length=None,
        use_cpu=True,
        bf16=False,
    )
    cls = GivenIds if keep_ids else DPOTrainer
    return cls(
        model=policy,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )


def test_trl_tokenization_differs_only_by_the_newline_after_eos(
    tiny, setup, tmp_path, tiny_tokenizer
):
    import datasets
    from transformers import AutoModelForCausalLM

    pairs, pairs_ref, ref_dir = setup
    config = parse_config(
        TrainConfig, {"policy": str(tiny.policy), "max_length": 128, "max_prompt_length": 64}
    )
    rows, has_ref = read_pairs(pairs_ref, config=config)
    ours, _ = build_examples(
        rows, tokenizer=tiny_tokenizer, config=config, pairs=pairs_ref, has_reference=has_ref
    )
    conversational = datasets.Dataset.from_list(
        [
            {
                "prompt": r["messages"],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in rows
        ]
    )
    policy = AutoModelForCausalLM.from_pretrained(str(tiny.policy))
    ref = AutoModelForCausalLM.from_pretrained(str(ref_dir))
    theirs = _trl_trainer(
        policy, ref, tiny_tokenizer, conversational, tmp_path, keep_ids=False
    ).train_dataset
    newline = tiny_tokenizer("\n", add_special_tokens=False).input_ids
    for mine, their in zip(ours, theirs, strict=True):
        assert their["prompt_ids"] == mine["prompt_ids"]
        assert their["chosen_ids"] == mine["chosen_ids"] + newline
        assert their["rejected_ids"] == mine["rejected_ids"] + newline


@pytest.mark.parametrize("layout", ["shared_prompt", "concatenated"])
def test_dpo_loss_and_gradient_equal_trl(tiny, setup, tmp_path, tiny_tokenizer, layout):
    import datasets
    from transformers import AutoModelForCausalLM

    _, pairs_ref, ref_dir = setup
    config = parse_config(
        TrainConfig,
        {
            "policy": str(tiny.policy),
            "max_length": 128,
            "max_prompt_length": 64,
            "loss": [{"name": "dpo", "weight": 1.0, "params": {"beta": 0.1}}],
            "pair_layout": layout,
        },
    )
    rows, has_ref = read_pairs(pairs_ref, config=config)
    examples, _ = build_examples(
        rows, tokenizer=tiny_tokenizer, config=config, pairs=pairs_ref, has_reference=has_ref
    )
    ours_model = AutoModelForCausalLM.from_pretrained(str(tiny.policy))
    dataset = datasets.Dataset.from_list(examples)
    ours = make_trainer(
        ours_model,
        tiny_tokenizer,
        dataset,
        config=config,
        args=training_arguments(config, out_dir=tmp_path / "ours"),
    )
    our_loss = ours.compute_loss(ours_model, ours.data_collator(examples))
    our_loss.backward()

    ids_only = datasets.Dataset.from_list(
        [{k: e[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for e in examples]
    )
    their_model = AutoModelForCausalLM.from_pretrained(str(tiny.policy))
    ref = AutoModelForCausalLM.from_pretrained(str(ref_dir))
    theirs = _trl_trainer(their_model, ref, tiny_tokenizer, ids_only, tmp_path, keep_ids=True)
    their_loss = theirs.compute_loss(their_model, theirs.data_collator(list(ids_only)))
    their_loss.backward()

    our_loss, their_loss = float(our_loss.detach()), float(their_loss.detach())
    assert abs(our_loss - their_loss) <= 1e-5
    assert abs(our_loss - 0.693147) > 1e-3  # reference != policy: a non-trivial loss
    ours_grads = dict(ours_model.named_parameters())
    worst = max(
        (ours_grads[n].grad - p.grad).abs().max().item() for n, p in their_model.named_parameters()
    )
    scale = max(p.grad.abs().max().item() for p in their_model.parameters())
    assert worst <= 1e-5 and scale > 1e-3
    print(
        f"{layout}: |loss diff| {abs(our_loss - their_loss):.2e}, max |grad diff| {worst:.2e}, max |grad| {scale:.3g}"
    )
