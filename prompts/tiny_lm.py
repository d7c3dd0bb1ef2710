"""A tiny random chat causal LM built offline, for exercising the llm decomposer without any download.

Its answers are noise, which is the point: it drives the retry and fallback paths through the real transformers
loading, chat-template and generation code.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_WORDS = (
    '{ } [ ] : , " questions id aspect kind text expected options weight yes no binary choice dense alignment '
    "physics quality temporal is there a the red green blue cube sphere cylinder camera pan left right in video ?"
).split()


def build_tiny_chat_lm(seed: int = 0):
    """(model, tokenizer): a 2-layer Qwen2 causal LM over a word-level vocabulary with a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + _WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHAT_TEMPLATE,
    )
    config = Qwen2Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"], tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    return model, tokenizer


def save_tiny_chat_lm(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny model and tokenizer with ``save_pretrained`` so they load back through ``from_pretrained``."""
    model, tokenizer = build_tiny_chat_lm(seed)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
