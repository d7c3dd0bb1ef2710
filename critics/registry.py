"""``load_critic(config)``: the one place that maps a critic config to a loaded, frozen critic."""

from __future__ import annotations

import json
import tempfile

import torch

from critics.base import Critic
from critics.config import FAMILIES, CriticConfig
from critics.llava import LlavaCritic
from critics.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from critics.qwen2_vl import QWEN_FAMILIES, QwenVLCritic
from critics.tiny import build_tiny_critic
from drf.errors import CriticError, ModelLoadError
from drf.hub import check_model_location

MODEL_CLASSES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
}


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _quantization_config(config: CriticConfig, dtype: torch.dtype):
    if config.quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelLoadError(
            f"critic.quantization={config.quantization} needs bitsandbytes; install it with `pip install drf[quant]`"
        ) from None
    from transformers import BitsAndBytesConfig

    if config.quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def _keep_4bit_weights_unpacked(model: torch.nn.Module) -> None:
    """Keep every 4-bit layer in the format it loaded in, whether or not gradients are on.

    On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weights into a faster CPU format the first time
    the layer runs without gradients. The trainers score without gradients (evaluation at step 0) before they score
    with them, and a repacked layer then fails the backward pass (an in-place change of a view of a leaf); layers
    narrower than the format's blocks, as in tiny critics, fail at once. The flag has no effect on other devices.
    """
    import bitsandbytes as bnb  # optional dependency (the quant extra); _quantization_config checked it is installed

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _image_stats(path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The checkpoint's normalisation constants (preprocessor_config.json), CLIP's when it has none."""
    from transformers.utils import cached_file

    try:
        file = cached_file(path, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        file = None
    if not file:
        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    with open(file) as f:
        data = json.load(f)
    return tuple(data.get("image_mean", OPENAI_CLIP_MEAN)), tuple(data.get("image_std", OPENAI_CLIP_STD))


def _load_model(config: CriticConfig, path: str):
    import transformers

    dtype = getattr(torch, config.dtype)
    kwargs = {"dtype": dtype}
    quant = _quantization_config(config, dtype)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map=config.device)
    model_class = getattr(transformers, MODEL_CLASSES[config.family])
    path = str(check_model_location(path, "critic.path", "config.json"))
    try:
        model = model_class.from_pretrained(path, **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(
            f"cannot load a {config.family} critic from {path!r} ({_first_line(err)}); "
            "check critic.path and critic.family"
        ) from None
    if quant is None:
        model = model.to(config.device)
    elif config.quantization == "4bit":
        _keep_4bit_weights_unpacked(model)
    return model, tokenizer


def load_critic(config: CriticConfig) -> Critic:
    """Build the critic a config describes (tiny or from_pretrained), frozen and in eval mode."""
    if config.family not in FAMILIES:
        raise CriticError(f"unknown critic family {config.family!r}; choose one of {', '.join(FAMILIES)}")
    config.validate()
    if config.tiny:
        from transformers.utils import logging as hf_logging

        # The save/load round trip is an implementation detail here; its progress bars would only be noise.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            with tempfile.TemporaryDirectory(prefix="drf-critic-") as tmp:
                model, tokenizer = _load_model(config, str(build_tiny_critic(config.family, tmp)))
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    else:
        model, tokenizer = _load_model(config, config.path)
        mean, std = _image_stats(config.path)
    if config.family == "llava":
        return LlavaCritic(model, tokenizer, config, mean, std)
    return QwenVLCritic(model, tokenizer, config, QWEN_FAMILIES[config.family], mean, std)
