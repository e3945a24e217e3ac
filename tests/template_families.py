"""Tiny stand-ins for five model families: their real chat templates and special tokens.

Each family (tests/data/chat_templates/families.json) gets a BPE tokenizer trained here with the
family's special tokens, BOS/EOS/pad and pre-tokenizer kind (byte-level like Llama-3 and Qwen2.5,
sentencepiece-style like Gemma-2, Mistral and Phi-3), its published template, and a model folder
whose `generation_config.json` lists the family's EOS ids. The policy is a programmed bigram
model (every layer's output projections zeroed, so a position's logits depend only on its own
token): from the prompt's last token it emits a given chain of tokens and then the family's
end-of-turn token, so a test knows exactly what generation must return and where it must stop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data" / "chat_templates"
FAMILIES: dict[str, dict] = json.loads((DATA / "families.json").read_text(encoding="utf-8"))
TEXT = (
    "tell me about the cat . the dog runs fast and the bird sings . what color is the moon ? "
    "a red stone sits by the river . count to three : one two three . hello you are helpful ."
).split()


@dataclass(frozen=True)
class Family:
    name: str
    folder: Path  # tokenizer + model + generation_config.json
    end_of_turn: str


def _pre_tokenizer(kind: str, split_regex: str | None):
    """As in the real tokenizer.json: Llama-3's and Qwen2's split regex, then byte-level."""
    from tokenizers import Regex, decoders, pre_tokenizers

    if kind == "byte_level" and split_regex is None:  # GPT-2's own regex, inside ByteLevel
        return pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    if kind == "byte_level":
        split = pre_tokenizers.Split(Regex(split_regex), behavior="isolated")
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        return pre_tokenizers.Sequence([split, byte_level]), decoders.ByteLevel()
    scheme = {"metaspace_first": "first", "metaspace_never": "never"}[kind]
    return (
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme),
        decoders.Metaspace(replacement="▁", prepend_scheme=scheme),
    )


def build_tokenizer(name: str, out_dir: Path, **overrides):
    """The family's tokenizer (trained on a small corpus), saved with its template; `overrides`
    replace entries of its families.json spec."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = {**FAMILIES[name], **overrides}
    named = [spec[k] for k in ("pad", "bos", "eos", "unk") if spec[k]]
    specials = list(dict.fromkeys([*named, *spec["specials"], *spec["generation_eos"]]))
    tok = Tokenizer(models.BPE(unk_token=spec["unk"]))
    tok.pre_tokenizer, tok.decoder = _pre_tokenizer(spec["pre_tokenizer"], spec["split_regex"])
    alphabet = pre_tokenizers.ByteLevel.alphabet() if spec["pre_tokenizer"] == "byte_level" else []
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    lines = [" ".join(TEXT[i:] + TEXT[:i]) for i in range(len(TEXT))] + ["\n\n\n :"]
    tok.train_from_iterator(lines, trainer=trainer)
    if spec["bos"]:  # like the real ones: encoding with special tokens prepends BOS
        bos = spec["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        pad_token=spec["pad"],
        unk_token=spec["unk"],
        additional_special_tokens=[t for t in specials if t not in named],
        model_max_length=512,
    )
    hf.chat_template = (DATA / spec["template"]).read_text(encoding="utf-8")
    hf.save_pretrained(str(out_dir))
    return hf


def build_family(name: str, root: Path, *, chain: list[int] | None = None) -> Family:
    """Tokenizer + programmed policy under `root/name`; `chain` = the ids to emit before the end
    of turn (default: the tokens of 'the dog runs fast' as this template renders them)."""
    folder = root / name
    tokenizer = build_tokenizer(name, folder)
    spec = FAMILIES[name]
    end = tokenizer.convert_tokens_to_ids(spec["end_of_turn"])
    messages = [{"role": "user", "content": "tell me about the cat"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    last = tokenizer(prompt, add_special_tokens=False)["input_ids"][-1]
    if chain is None:
        chain = response_ids(tokenizer, messages, "the dog runs fast", end=end)
    _save_bigram_policy(folder, tokenizer, [last, *chain, end], eos=spec["generation_eos"])
    return Family(name, folder, spec["end_of_turn"])


def response_ids(tokenizer, messages, response: str, *, end: int) -> list[int]:
    """The ids of `response` as the whole conversation tokenizes them, before the end of turn
    (what a model trained on this template would emit)."""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": response}], tokenize=False
    )
    prompt_ids, full_ids = (
        tokenizer(t, add_special_tokens=False)["input_ids"] for t in (prompt, full)
    )
    assert full_ids[: len(prompt_ids)] == prompt_ids, "use a prefix-stable family"
    ids = full_ids[len(prompt_ids) :]
    return ids[: ids.index(end)]


def _save_bigram_policy(folder: Path, tokenizer, states: list[int], *, eos: list[str]) -> None:
    """A LlamaForCausalLM that, from each token of `states`, predicts the next one (greedy)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    assert len(set(states[:-1])) == len(states) - 1, f"chain states repeat: {states}"
    hidden = 64
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,  # head_dim 32: the smallest vLLM's CPU attention supports
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in eos],
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:  # the residual stream stays the token's own embedding
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for step, (here, after) in enumerate(zip(states, states[1:], strict=False)):
            model.model.embed_tokens.weight[here] = torch.nn.functional.one_hot(
                torch.tensor(step), hidden
            ).float()
            model.lm_head.weight[after] = 10.0 * model.model.embed_tokens.weight[here]
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
