"""Tiny offline critics: real VLM architectures at toy size, with a chat tokenizer trained in-process.

Tests, the toy world and benchmarks need critics that load through the same ``from_pretrained`` path as real ones
without a model hub. The tokenizer is a byte-level BPE (so any English text encodes) whose merges make every word of the toy world's
prompts, questions and answers one token, plus the family's special tokens and a chat template.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch

from drf.errors import CriticError
from drf.models.tiny import PROMPT_WORDS
from prompts.templates import template_files

TINY_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "llava")

QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{{ message['content'] }} {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

_ANSWERS = ("Yes", "No", "yes", "no", "YES", "NO")
# Words of the critic's own instructions and answers, beyond the questions' (read from the question templates).
INSTRUCTION_WORDS = tuple(
    "Answer Options Then You Yes No You are a careful video critic question explain describe in one sentence "
    "answer with option red yellow green blue".split()
)


def _template_words() -> set[str]:
    """Every word written in the question templates, also capitalised (a template may capitalise the word that
    starts its question): the text of any question the rule decomposer asks."""
    words = {word for path in template_files() for word in re.findall(r"[A-Za-z]+", path.read_text())}
    return words | {word.capitalize() for word in words}


def _word_corpus(extra_words: Iterable[str] = ()) -> list[str]:
    """Every word once after a space and once at a line start, as often as needed for BPE to merge each into a
    single token: with all words equally frequent, merges go on until every word is whole."""
    words = sorted(_template_words() | set(INSTRUCTION_WORDS) | set(PROMPT_WORDS) | set(_ANSWERS) | set(extra_words))
    return [" " + " ".join(words), *words, " , . ? : "] * 8


def build_tokenizer(family: str, extra_words: Iterable[str] = ()):
    """Byte-level BPE chat tokenizer with the family's special tokens in which every word of the toy world's prompts,
    questions and answers is one token (``Ġred``, not ``Ġre d``), so a small critic does not spend its capacity on
    spelling; other text still encodes byte by byte. ``extra_words`` become single tokens too."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    qwen = family != "llava"
    specials = QWEN_SPECIALS if qwen else LLAVA_SPECIALS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,  # an upper bound: the merges stop when every corpus word is whole
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_word_corpus(extra_words), trainer)
    tok.add_special_tokens(specials)
    if qwen:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=QWEN_CHAT_TEMPLATE
        )
    else:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            chat_template=LLAVA_CHAT_TEMPLATE,
        )
        fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    for word in ("Yes", "No"):
        if len(fast.encode(word, add_special_tokens=False)) != 1:
            raise RuntimeError(f"tiny tokenizer splits {word!r}; grow the corpus or vocabulary")
    return fast


def padded_vocab_size(tokenizer) -> int:
    """The tokenizer's size rounded up to a multiple of 64, as the embedding tables of the tiny critics are."""
    return (len(tokenizer) + 63) // 64 * 64


def qwen_vision_token_ids(tokenizer) -> dict[str, int]:
    """The Qwen-VL config fields that name the vision placeholder tokens, read from ``tokenizer``."""
    return {
        name: tokenizer.convert_tokens_to_ids(tok)
        for name, tok in (
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        )
    }


def _qwen_model(family: str, tokenizer):
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )

    ids = qwen_vision_token_ids(tokenizer)
    text = dict(
        vocab_size=padded_vocab_size(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 10000.0},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.pad_token_id,
    )
    if family == "qwen2_vl":
        vision = dict(
            depth=2,
            embed_dim=32,
            hidden_size=32,
            mlp_ratio=2,
            num_heads=4,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        return Qwen2VLForConditionalGeneration(config)
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=32,
        num_heads=4,
        out_hidden_size=32,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    return Qwen2_5_VLForConditionalGeneration(config)


def _llava_model(tokenizer):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=28, patch_size=14
    )
    text = LlamaConfig(
        vocab_size=padded_vocab_size(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    return LlavaForConditionalGeneration(config)


def build_tiny_model(family: str, seed: int = 0):
    """-> (model, tokenizer) of the family's tiny critic with seeded random weights."""
    if family not in TINY_FAMILIES:
        raise CriticError(f"no tiny critic for family {family!r}; choose one of {', '.join(TINY_FAMILIES)}")
    tokenizer = build_tokenizer(family)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _llava_model(tokenizer) if family == "llava" else _qwen_model(family, tokenizer)
    return model.eval(), tokenizer


def build_tiny_critic(family: str, directory: str | Path | None = None, seed: int = 0) -> Path:
    """Save the family's tiny critic (model + tokenizer) to ``directory`` (a new temp dir if None); returns it."""
    path = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix=f"drf-tiny-{family}-"))
    model, tokenizer = build_tiny_model(family, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
