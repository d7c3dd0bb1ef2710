"""What every diffusers adapter does the same way: building itself from a ``model:`` config, loading a pipeline with a
float32 VAE, writing a denoiser's LoRA as
diffusers' own LoRA file (so a stock pipeline's ``load_lora_weights`` reads it), switching the attention backend."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drf.errors import ConfigError, ModelLoadError
from drf.hub import check_model_location

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def generator_options(cfg: Any, **family_kwargs: Any) -> dict[str, Any]:
    """The keyword arguments an adapter's constructor takes from a ``ModelConfig`` (all but the pipeline)."""
    return dict(
        height=cfg.height,
        width=cfg.width,
        num_frames=cfg.num_frames,
        scheduler=cfg.scheduler,
        negative_prompt=cfg.negative_prompt,
        max_sequence_length=cfg.max_sequence_length,
        decode_checkpointing=cfg.decode_checkpointing,
        **family_kwargs,
    )


def build_from_config(
    cls: Any, cfg: Any, device: str | torch.device, build_tiny: Callable[[str], dict[str, Any]], **family_kwargs: Any
) -> Any:
    """An adapter ``cls`` built from a ``drf.models.registry.ModelConfig``: from ``build_tiny(cfg.tiny)``'s components
    (cast to ``cfg.dtype`` except the VAE) or ``cls.from_pretrained(cfg.path)``; ``family_kwargs`` go to ``cls``
    besides the settings every family takes."""
    kwargs = generator_options(cfg, **family_kwargs)
    if cfg.tiny:
        gen = cls.from_components(build_tiny(cfg.tiny), **kwargs)
        gen.pipe.to(device)
        if cfg.dtype != "float32":
            for module in (*gen.denoisers(), gen.pipe.text_encoder):
                module.to(DTYPES[cfg.dtype])
    else:
        gen = cls.from_pretrained(cfg.path, dtype=cfg.dtype, device=device, **kwargs)
    if cfg.attention_backend:
        set_attention_backend(gen.denoisers(), gen.device, cfg.attention_backend)
    return gen


def load_pipeline(pipeline_cls: Any, vae_cls: Any, path: str, dtype: str | torch.dtype, label: str) -> Any:
    """A diffusers pipeline from a hub id or local directory, in ``dtype`` except its VAE (float32, whose decode
    gradients bf16 would round away); a one-line ModelLoadError naming ``label`` (e.g. "Wan") when it cannot load."""
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    expanded = str(check_model_location(path, "model.path", "model_index.json"))
    try:
        vae = vae_cls.from_pretrained(expanded, subfolder="vae", dtype=torch.float32)
        return pipeline_cls.from_pretrained(expanded, vae=vae, dtype=torch_dtype)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"could not load {label} pipeline from {path!r}: {first}") from None


def write_lora(
    pipeline_cls: Any, module: nn.Module, out_dir: Path, weight_name: str, given: Mapping[str, torch.Tensor] | None
) -> None:
    """``module``'s adapter (or ``given``: its LoRA tensors whole, by parameter name, as a sharded run gathers them)
    as ``out_dir/weight_name`` through ``pipeline_cls.save_lora_weights``, with the adapter's metadata (rank, alpha,
    targets) so the loader rebuilds the same adapter."""
    from peft.utils import get_peft_model_state_dict  # lazy: peft is only needed once a LoRA is saved

    state = get_peft_model_state_dict(module, state_dict=None if given is None else dict(given))
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    pipeline_cls.save_lora_weights(
        out_dir,
        transformer_lora_layers=state,
        weight_name=weight_name,
        transformer_lora_adapter_metadata=module.peft_config["default"].to_dict(),
    )


def set_attention_backend(models: list[nn.Module], device: torch.device, backend: str) -> None:
    """Switch the denoisers' attention kernel (e.g. ``xformers``, ``flash``); fails early with the fix."""
    if backend == "xformers":
        try:
            import xformers  # noqa: F401
        except ImportError:
            raise ConfigError(
                "model.attention_backend 'xformers' needs the xformers extra: pip install 'drf[xformers]'"
            ) from None
        if device.type != "cuda":
            raise ConfigError(
                f"model.attention_backend 'xformers' runs on CUDA only; unset it (or use 'native') on {device.type}"
            )
    for model in models:
        try:
            model.set_attention_backend(backend)
        except (ValueError, RuntimeError, ImportError) as err:
            raise ConfigError(f"model.attention_backend {backend!r} is not usable here: {err}") from None
