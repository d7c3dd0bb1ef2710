"""LTX-Video text-to-video as a ``VideoGenerator``, over diffusers' own components (``LTXPipeline``,
``LTXVideoTransformer3DModel``, ``AutoencoderKLLTXVideo``, a T5 encoder).

``LTXPipeline`` denoises packed latents ``[B, F*h*w, C]``; drf's chain, rewards and GRPO/NFT keep the latent video
``[B, C, F, h, w]`` as with every family, and ``velocity`` packs on the way in and unpacks on the way out. The
scheduler update is elementwise, so the chain equals ``LTXPipeline.__call__`` step for step (tested). Sigmas are
LTX's: ``linspace(1, 1/N, N)`` shifted by ``mu`` from the video's token count, set exactly as the pipeline sets them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from drf.errors import ConfigError, ModelLoadError
from drf.models.base import Cond, Family, LatentLayout
from drf.models.shared import build_from_config, load_pipeline, write_lora
from drf.models.tiny import LTX_PRESETS, build_tiny_ltx_components

SCHEDULERS = ("euler", "unipc")
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def build_scheduler(name: str, euler_config: Mapping[str, Any]) -> Any:
    """``euler``: the model's own ``FlowMatchEulerDiscreteScheduler``; ``unipc``: UniPC on the same flow sigmas and
    the same token-count shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if name == "euler":
        return FlowMatchEulerDiscreteScheduler.from_config(euler_config)
    if name == "unipc":
        return UniPCMultistepScheduler(
            num_train_timesteps=euler_config.get("num_train_timesteps", 1000),
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=euler_config.get("shift", 1.0),
            use_dynamic_shifting=euler_config.get("use_dynamic_shifting", False),
            shift_terminal=euler_config.get("shift_terminal"),
        )
    raise ConfigError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


class LTXGenerator:
    """LTX-Video text-to-video model: one transformer, its LoRA in diffusers' ``pytorch_lora_weights.safetensors``."""

    expert_labels: Mapping[str, str] = {}
    lora_files = {"transformer": LORA_WEIGHTS}

    def __init__(
        self,
        pipe: Any,
        *,
        height: int,
        width: int,
        num_frames: int,
        scheduler: str | None = None,
        negative_prompt: str = "",
        max_sequence_length: int = 128,
        decode_checkpointing: str = "frames",
        frame_rate: int = 25,
    ) -> None:
        self.pipe = pipe
        self.euler_config = dict(pipe.scheduler.config)
        if scheduler is not None:
            pipe.scheduler = build_scheduler(scheduler, self.euler_config)
        transformer = pipe.transformer.config
        self.latent_layout = LatentLayout(
            channels=transformer.in_channels,
            temporal_scale=pipe.vae_temporal_compression_ratio,
            spatial_scale=pipe.vae_spatial_compression_ratio,
            patch_size=(transformer.patch_size, transformer.patch_size),
        )
        self.latent_layout.check_video_size(num_frames, height, width)
        self.height, self.width, self.num_frames = height, width, num_frames
        self.negative_prompt = negative_prompt
        self.max_sequence_length = max_sequence_length
        self.frame_rate = frame_rate
        for module in (pipe.vae, pipe.text_encoder, pipe.transformer):
            module.requires_grad_(False).eval()
        if decode_checkpointing != "none":
            pipe.vae.enable_gradient_checkpointing()  # only acts while a decode carries gradient

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls, path: str, *, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu", **kwargs: Any
    ) -> LTXGenerator:
        """Load a diffusers LTX-Video pipeline from a hub id or a local directory (the VAE stays in float32)."""
        from diffusers import AutoencoderKLLTXVideo, LTXPipeline

        pipe = load_pipeline(LTXPipeline, AutoencoderKLLTXVideo, path, dtype, "LTX-Video")
        return cls(pipe.to(device), **kwargs)

    @classmethod
    def from_components(cls, components: dict[str, Any], **kwargs: Any) -> LTXGenerator:
        from diffusers import LTXPipeline

        return cls(LTXPipeline(**components), **kwargs)

    @classmethod
    def from_config(cls, cfg: Any, device: str | torch.device = "cpu") -> LTXGenerator:
        """Build from a ``drf.models.registry.ModelConfig`` (tiny preset or ``path``)."""
        return build_from_config(cls, cfg, device, build_tiny_ltx_components)

    # ----------------------------------------------------------------------------------------- protocol
    @property
    def device(self) -> torch.device:
        return self.pipe.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype

    def denoisers(self) -> list[nn.Module]:
        return [self.pipe.transformer]

    def expert_names(self) -> list[str]:
        return ["transformer"]

    def expert_of_steps(self, num_steps: int) -> list[str]:
        return ["transformer"] * num_steps

    def expert_at(self, timestep: float) -> str:
        return "transformer"

    def trainable_module(self, experts: Sequence[str] = ("transformer",)) -> nn.Module:
        return self.pipe.transformer

    def _latent_grid(self) -> tuple[int, int, int]:
        """Latent ``(frames, height, width)`` of one video."""
        layout = self.latent_layout
        return (
            (self.num_frames - 1) // layout.temporal_scale + 1,
            self.height // layout.spatial_scale,
            self.width // layout.spatial_scale,
        )

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], guidance_scale: float, negative_prompt: str | None = None) -> Cond:
        do_cfg = guidance_scale > 1.0
        negative = self.negative_prompt if negative_prompt is None else negative_prompt
        embeds, mask, negative_embeds, negative_mask = self.pipe.encode_prompt(
            prompt=list(prompts),
            negative_prompt=[negative] * len(prompts) if do_cfg else None,
            do_classifier_free_guidance=do_cfg,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
        )
        if not do_cfg:
            return Cond(embeds.to(self.dtype), None, guidance_scale, mask)
        return Cond(embeds.to(self.dtype), negative_embeds.to(self.dtype), guidance_scale, mask, negative_mask)

    def init_latents(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise ``[B, C, F, h, w]``: the pipeline's own draw (``prepare_latents``), unpacked."""
        packed = self.pipe.prepare_latents(
            batch_size,
            self.latent_layout.channels,
            self.height,
            self.width,
            self.num_frames,
            torch.float32,
            self.device,
            generator,
        )
        return self.unpack(packed)

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, F, h, w]`` -> the pipeline's token layout ``[B, F*h*w, C]`` (with the transformer's patches)."""
        config = self.pipe.transformer.config
        return self.pipe._pack_latents(latents, config.patch_size, config.patch_size_t)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`pack`."""
        config = self.pipe.transformer.config
        f, h, w = self._latent_grid()
        p, pt = config.patch_size, config.patch_size_t
        return self.pipe._unpack_latents(packed, f // pt, h // p, w // p, p, pt)

    def scheduler(self, num_steps: int) -> Any:
        """A fresh scheduler set as ``LTXPipeline`` sets it: sigmas ``linspace(1, 1/N, N)`` and ``mu`` from the
        video's latent token count."""
        from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

        config = self.pipe.scheduler.config
        scheduler = type(self.pipe.scheduler).from_config(config)
        f, h, w = self._latent_grid()
        mu = calculate_shift(
            f * h * w,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        sigmas = np.linspace(1.0, 1 / num_steps, num_steps)
        scheduler.set_timesteps(sigmas=sigmas, device=self.device, mu=mu)
        scheduler.set_begin_index(0)
        return scheduler

    def velocity(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Guided flow velocity ``[B,C,F,h,w]`` at ``timestep``, computed as ``LTXPipeline`` does: the unconditional
        and conditional rows in one batch, the output in float32, then the guidance mix."""
        x = self.pack(latents).to(self.dtype)
        embeds, mask = cond.embeds, cond.mask
        if cond.do_cfg:
            x = torch.cat([x, x])
            embeds = torch.cat([cond.negative_embeds, embeds])
            mask = torch.cat([cond.negative_mask, mask])
        f, h, w = self._latent_grid()
        spatial = self.latent_layout.spatial_scale
        v = self.pipe.transformer(
            hidden_states=x,
            encoder_hidden_states=embeds,
            timestep=timestep.expand(x.shape[0]),
            encoder_attention_mask=mask,
            num_frames=f,
            height=h,
            width=w,
            rope_interpolation_scale=(self.latent_layout.temporal_scale / self.frame_rate, spatial, spatial),
            return_dict=False,
        )[0].float()
        if cond.do_cfg:
            v_uncond, v_text = v.chunk(2)
            v = v_uncond + cond.guidance_scale * (v_text - v_uncond)
        return self.unpack(v)

    def decode(self, latents: torch.Tensor, frame_indices: list[int] | None = None) -> torch.Tensor:
        """Frames ``[B,T,3,H,W]`` in [0,1], differentiable in ``latents``: the pipeline's decode at
        ``decode_timestep`` 0 (no decode noise).

        LTX-Video's decoder is not causal in time, so every frame needs the whole latent video: the decode is whole
        and ``frame_indices`` picks from it. With gradient the decoder's blocks are checkpointed (unless
        ``model.decode_checkpointing: none``), so backward recomputes them instead of keeping their activations.
        """
        if frame_indices is not None and not frame_indices:
            raise ValueError("frame_indices is empty")
        vae = self.pipe.vae
        z = self.pipe._denormalize_latents(
            latents.to(vae.dtype), vae.latents_mean, vae.latents_std, vae.config.scaling_factor
        )
        temb = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype) if vae.config.timestep_conditioning else None
        video = vae.decode(z, temb, return_dict=False)[0]  # [B,3,T,H,W] in [-1,1]
        frames = (video * 0.5 + 0.5).clamp(0, 1).transpose(1, 2)
        if frame_indices is not None:
            frames = frames[:, list(frame_indices)]
        return frames

    # ----------------------------------------------------------------------------------------- LoRA
    def save_lora(self, out_dir: str | Path, weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> Path:
        """Write the transformer's LoRA as diffusers' ``pytorch_lora_weights.safetensors`` with its adapter metadata,
        so a stock ``LTXPipeline.load_lora_weights`` reproduces this generator. ``weights``: the LoRA tensors whole
        (``{"transformer": {name: tensor}}``), as a sharded run gathers them. Returns the directory."""
        from diffusers import LTXPipeline

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_lora(LTXPipeline, self.pipe.transformer, out_dir, LORA_WEIGHTS, (weights or {}).get("transformer"))
        return out_dir

    def load_lora(self, path: str | Path) -> None:
        """Load and activate a LoRA written by :meth:`save_lora` (or any diffusers LTX-Video LoRA file or folder)."""
        path = Path(path)
        if not path.exists():
            raise ModelLoadError(f"LoRA {str(path)!r} does not exist; give a directory written by save_lora")
        self.pipe.load_lora_weights(str(path))

    def to_pipeline(self) -> Any:
        """The underlying ``LTXPipeline`` (shares modules)."""
        return self.pipe


FAMILY = Family(
    name="ltx",
    build=LTXGenerator.from_config,
    frame_step=8,
    size_multiple=32,
    schedulers=SCHEDULERS,
    tiny_presets=LTX_PRESETS,
    decode_checkpointing=("frames", "none"),
)
