"""The run's generator and critic built from their configs alone, as fake tensors: real module classes and shapes,
no weights, no allocation.

A hub id resolves to a config file shipped in ``drf/plan/configs/`` (the public configs of the models drf documents);
a local directory to its own ``config.json`` files. Modules are built on the meta device in the dtypes their loaders
give them (``WanGenerator.from_pretrained``: VAE in float32, diffusers' fp32-kept modules; transformers' rules for the
critic), then each parameter and buffer is swapped for a fake CPU tensor of the same shape, stride and dtype.

Wan's tokenizer is the offline tiny one (``drf.models.tiny``): Wan pads every prompt to ``max_sequence_length``
tokens, so its text encoder sees the same shapes whatever the tokenizer. A critic in a local directory brings its own
tokenizer; a hub id's gets the offline chat tokenizer (``critics.tiny``), in which every word of the question templates
and of the run's prompts is one token, about as Qwen's tokenizer makes them: the critic's rows of question tokens,
each through every layer, are a large part of its activations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from critics.config import CriticConfig
from critics.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from critics.qwen2_vl import QWEN_FAMILIES, QwenVLCritic
from critics.registry import MODEL_CLASSES
from critics.tiny import build_tokenizer as build_chat_tokenizer
from critics.tiny import qwen_vision_token_ids
from drf.errors import ConfigError
from drf.hub import looks_local
from drf.models.registry import ModelConfig
from drf.models.shared import DTYPES, generator_options
from drf.models.tiny import build_tiny_wan_components
from drf.models.tiny import build_tokenizer as build_t5_tokenizer
from drf.models.wan import WanGenerator

SHIPPED = Path(__file__).resolve().parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """Hub id -> shipped config file, read from each file's ``hub_id``."""
    found = {}
    for path in sorted(SHIPPED.glob("*.json")):
        found[json.loads(path.read_text(encoding="utf-8"))["hub_id"]] = path
    return found


def _shipped(path: str, key: str) -> dict[str, Any]:
    known = shipped_configs()
    if path not in known:
        raise ConfigError(
            f"{key} {path!r}: drf plan has no shipped config for this hub id (it knows {', '.join(known)}); "
            f"point {key} at a local directory holding the model's config.json files"
        )
    return json.loads(known[path].read_text(encoding="utf-8"))


def _read_json(path: Path, key: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist; drf plan reads the model's config files from there")
    return json.loads(path.read_text(encoding="utf-8"))


def wan_configs(path: str) -> dict[str, Any]:
    """``{"transformer", "transformer_2" (A14B), "boundary_ratio", "vae", "text_encoder"}`` configs of a Wan model."""
    if not looks_local(path):
        return _shipped(path, "model.path")
    folder = Path(path).expanduser()
    index = _read_json(folder / "model_index.json", "model.path")
    out = {
        name: _read_json(folder / name / "config.json", "model.path") for name in ("transformer", "vae", "text_encoder")
    }
    if (folder / "transformer_2" / "config.json").is_file():
        out["transformer_2"] = _read_json(folder / "transformer_2" / "config.json", "model.path")
    out["boundary_ratio"] = index.get("boundary_ratio")
    return out


# ------------------------------------------------------------------------------------------------ fake modules
def fake_module(module: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """Swap every parameter and buffer for a fake CPU tensor of the same shape, stride and dtype (shared ones stay
    shared: tied embeddings are counted once)."""
    made: dict[int, torch.Tensor] = {}  # by id of the original tensor, which stays alive meanwhile

    def fake(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in made:
            with mode:
                empty = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")
            made[id(t)] = nn.Parameter(empty, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else empty
        return made[id(t)]

    for sub in module.modules():
        for kind in (sub._parameters, sub._buffers):
            for name, tensor in list(kind.items()):
                if tensor is not None:
                    kind[name] = fake(tensor)
    return module


def _diffusers_dtype(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``module`` in ``dtype`` except what diffusers' ``from_pretrained`` keeps in float32."""
    module.to(dtype)
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or [])
    if dtype != torch.float32 and keep:
        for name, sub in module.named_modules():
            if keep & set(name.split(".")):
                sub.to(torch.float32)
    return module


def fake_generator(cfg: ModelConfig, mode: FakeTensorMode) -> WanGenerator:
    """The ``model:`` section's generator with fake weights (tiny presets are built for real, then faked)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    if cfg.family != "wan":
        raise ConfigError(f"model.family {cfg.family!r}: drf plan builds wan generators only")
    dtype = DTYPES[cfg.dtype]
    if cfg.tiny:
        components = build_tiny_wan_components(cfg.tiny)
        for name in ("transformer", "transformer_2", "text_encoder"):
            if name in components:
                components[name].to(dtype)
    else:
        configs = wan_configs(cfg.path)
        with torch.device("meta"):
            components = {
                name: _diffusers_dtype(WanTransformer3DModel.from_config(configs[name]), dtype)
                for name in ("transformer", "transformer_2")
                if configs.get(name)
            }
            components["vae"] = AutoencoderKLWan.from_config(_with_latent_stats(configs["vae"]))
            text = UMT5Config(**configs["text_encoder"])
            components["text_encoder"] = UMT5EncoderModel(text).to(dtype)
        components["tokenizer"] = build_t5_tokenizer()
        components["scheduler"] = FlowMatchEulerDiscreteScheduler(shift=cfg.shift)
        if configs.get("boundary_ratio") is not None:
            components["boundary_ratio"] = configs["boundary_ratio"]
    for name in ("transformer", "transformer_2", "vae", "text_encoder"):
        if name in components:
            fake_module(components[name].eval(), mode)
    return WanGenerator.from_components(components, **generator_options(cfg, shift=cfg.shift))


def _with_latent_stats(vae: dict[str, Any]) -> dict[str, Any]:
    """A VAE config with per-channel latent statistics of the right length (their values do not change memory;
    shipped configs leave them out)."""
    z = vae.get("z_dim", 16)
    return {"latents_mean": [0.0] * z, "latents_std": [1.0] * z, **vae}


# 4-bit NF4 (bitsandbytes, block size 64, one float32 absmax per block) and LLM.int8 weights, as a fraction of bf16.
QUANTIZED_SCALE = {"4bit": (0.5 + 4 / 64) / 2, "8bit": 1 / 2}


def _critic_model_and_tokenizer(cfg: CriticConfig, words: Sequence[str]) -> tuple[nn.Module, Any]:
    """A tiny critic for real; a local directory's config and tokenizer; a hub id's shipped config with the offline
    chat tokenizer, ``words`` among its whole-word tokens (its placeholder token ids written into the config)."""
    import transformers

    if cfg.tiny:
        from critics.tiny import build_tiny_model  # lazy: only tiny critics need it

        return build_tiny_model(cfg.family)
    if looks_local(cfg.path):
        folder = Path(cfg.path).expanduser()
        _read_json(folder / "config.json", "critic.path")  # a one-line error when it is missing
        config = transformers.AutoConfig.from_pretrained(folder)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    else:
        config = getattr(transformers, QWEN_FAMILIES[cfg.family].config_class)(
            **_shipped(cfg.path, "critic.path")["config"]
        )
        tokenizer = build_chat_tokenizer(cfg.family, words)
        for name, value in qwen_vision_token_ids(tokenizer).items():
            setattr(config, name, value)
    with torch.device("meta"):
        return getattr(transformers, MODEL_CLASSES[cfg.family])(config), tokenizer


def prompt_words(prompts_file: str | Path) -> list[str]:
    """The words of a run's prompts file (its questions repeat them)."""
    path = Path(prompts_file)
    return re.findall(r"[A-Za-z]+", path.read_text(encoding="utf-8")) if path.is_file() else []


def fake_critic(cfg: CriticConfig, mode: FakeTensorMode, words: Sequence[str] = ()) -> QwenVLCritic:
    """The ``critic:`` section's Qwen-VL critic with fake weights; ``words``: the run's prompt words
    (``prompt_words``), whole tokens of a hub id's stand-in tokenizer."""
    if cfg.family not in QWEN_FAMILIES:
        raise ConfigError(f"critic.family {cfg.family!r}: drf plan builds the qwen2_vl and qwen2_5_vl critics")
    model, tokenizer = _critic_model_and_tokenizer(cfg, words)
    model.to(getattr(torch, cfg.dtype)).eval().requires_grad_(False)
    fake_module(model, mode)
    return QwenVLCritic(model, tokenizer, cfg, QWEN_FAMILIES[cfg.family], OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def quantized_linears(model: nn.Module) -> list[nn.Linear]:
    """The linear layers bitsandbytes quantises when transformers loads a model in 4 or 8 bits: all but the output
    head (``get_keys_to_not_convert`` keeps the output embeddings in full precision)."""
    head = model.get_output_embeddings()
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m is not head]
