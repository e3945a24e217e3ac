"""Build a tiny local model set: tokenizer, causal-LM policy, sequence-classification reward model.

Used by the tests and `prefsmith quickstart`: nothing is downloaded. Everything is saved with
`save_pretrained` and must be loaded back with `from_pretrained(path)`, the code users run.

The tokenizer is a byte-level BPE trained with `tokenizers` on generated chat text. Like Llama's,
its post-processor prepends BOS, and its chat template also starts with BOS: code that renders a
template and then tokenizes with special tokens gets a double BOS, which the stages must avoid.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}\n{% endif %}"
)

WORDS = (
    "the a one two three four five six seven eight nine ten red blue green cat dog bird fish "
    "tree house river stone sun moon star rain wind is are was has have can will likes sees "
    "runs jumps sings reads writes big small fast slow happy quiet bright dark old new and or but "
    "yes no please thanks hello answer question count name color number story tell me about"
).split()
TOPICS = ["cat", "dog", "bird", "river", "moon", "tree", "house", "star", "rain", "stone"]


@dataclass(frozen=True)
class TinyPaths:
    root: Path
    tokenizer: Path
    policy: Path
    reward_model: Path


def sample_prompt(rng: random.Random) -> str:
    topic = rng.choice(TOPICS)
    form = rng.randrange(4)
    if form == 0:
        return f"tell me about the {topic}"
    if form == 1:
        return f"what color is the {topic} ?"
    if form == 2:
        return f"count to {rng.choice(WORDS[2:11])}"
    return f"write a story about a {topic} and a {rng.choice(TOPICS)}"


def sample_answer(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 24)))


def corpus(n_lines: int, *, seed: int = 0) -> list[str]:
    """Generated text with every word, digit and punctuation the tiny models will see."""
    rng = random.Random(seed)
    lines = [f"{sample_prompt(rng)} {sample_answer(rng)}" for _ in range(n_lines)]
    lines.append("0 1 2 3 4 5 6 7 8 9 10 42 . , ? ! : ; - + = ( ) ' \" é ü ñ 日本")
    return lines


def build_tokenizer(out_dir: str | Path, *, vocab_size: int = 384, seed: int = 0):
    """Train a byte-level BPE tokenizer and save it with the chat template. Returns the HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(2000, seed=seed), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=512,
    )
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(str(out_dir))
    return hf


def _llama_config(tokenizer, *, hidden: int, layers: int, seed_std: float, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        # head_dim 32: the smallest vLLM's CPU attention supports (16 fails at engine start-up).
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=512,
        initializer_range=seed_std,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
        **extra,
    )


def build_policy(
    out_dir: str | Path,
    tokenizer,
    *,
    hidden: int = 64,
    layers: int = 2,
    pretrain_steps: int = 150,
    seed: int = 0,
) -> Path:
    """A tiny LlamaForCausalLM, briefly trained on chat-formatted corpus so it answers and stops."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(_llama_config(tokenizer, hidden=hidden, layers=layers, seed_std=0.05))
    if pretrain_steps:
        _pretrain(model, tokenizer, steps=pretrain_steps, seed=seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return Path(out_dir)


def _pretrain(model, tokenizer, *, steps: int, seed: int, batch: int = 16) -> None:
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        texts = [
            tokenizer.apply_chat_template(
                [
                    {"role": "user", "content": sample_prompt(rng)},
                    {"role": "assistant", "content": sample_answer(rng)},
                ],
                tokenize=False,
            )
            for _ in range(batch)
        ]
        enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)  # (B, T)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def build_reward_model(
    out_dir: str | Path, tokenizer, *, hidden: int = 64, layers: int = 2, seed: int = 1
) -> Path:
    """A tiny LlamaForSequenceClassification (one label), random init: scores for plumbing tests."""
    import torch
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = _llama_config(tokenizer, hidden=hidden, layers=layers, seed_std=0.2, num_labels=1)
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return Path(out_dir)


def build_tiny_setup(root: str | Path, *, pretrain_steps: int = 150, seed: int = 0) -> TinyPaths:
    """Build (or reuse, if already complete) the tokenizer, policy and reward model under `root`."""
    root = Path(root)
    paths = TinyPaths(root, root / "tokenizer", root / "policy", root / "reward_model")
    done = root / ".complete"
    if done.exists():
        return paths
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from prefsmith.flows.console import is_verbose

    logger.info("building tiny models under %s (about 15 s)", root)
    if not is_verbose():  # save_pretrained's progress bars say nothing at this size
        hf_logging.disable_progress_bar()
    build_tokenizer(paths.tokenizer, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(str(paths.tokenizer))
    build_policy(paths.policy, tokenizer, pretrain_steps=pretrain_steps, seed=seed)
    build_reward_model(paths.reward_model, tokenizer, seed=seed + 1)
    done.write_text("ok\n")
    return paths
