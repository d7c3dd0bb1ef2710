"""Wan 2.1 / 2.2 text-to-video as a ``VideoGenerator``, over diffusers' own components.

The adapter keeps a ``WanPipeline`` for the parts diffusers already does right (prompt encoding, latent
initialisation, VAE statistics) and exposes the denoiser as a single ``velocity`` call, so our chain can decide per
step whether gradients flow while staying numerically identical to ``WanPipeline.__call__``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drf.errors import ConfigError, ModelLoadError
from drf.models.base import Cond, Experts, Family, LatentLayout
from drf.models.shared import build_from_config, load_pipeline, set_attention_backend, write_lora
from drf.models.tiny import PRESETS, build_tiny_wan_components
from drf.models.wan_decode import checkpointed_decode

SCHEDULERS = ("euler", "unipc")


LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
# Wan 2.2's low-noise expert: its LoRA beside the first, loaded with load_into_transformer_2=True.
LORA_WEIGHTS_2 = "pytorch_lora_weights_transformer_2.safetensors"
EXPERTS = {"high_noise": "transformer", "low_noise": "transformer_2"}  # model.train_experts name -> pipeline name


def build_scheduler(name: str, shift: float):
    """A flow-matching scheduler by short name; ``shift`` is the timestep shift of the flow schedule."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    if name == "unipc":
        return UniPCMultistepScheduler(
            num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift
        )
    raise ConfigError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


def decode_latents(vae: Any, latents: torch.Tensor, checkpointing: str = "none") -> torch.Tensor:
    """Normalised latents ``[B,C,F,h,w]`` (the space the generator denoises in) -> frames ``[B,T,3,H,W]`` in [0,1],
    differentiable: ``z * latents_std + latents_mean`` through ``vae.decode``. With gradient and ``checkpointing``
    ``frames`` or ``segments`` the decode runs latent frame by latent frame (``drf.models.wan_decode``). The one
    decode path of the Wan generator, also for tools that hold only its VAE."""
    z = latents.to(vae.dtype)
    mean = torch.tensor(vae.config.latents_mean, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
    z = z / inv_std + mean
    checkpointed = checkpointing != "none" and torch.is_grad_enabled() and z.requires_grad
    if checkpointed and not vae.use_tiling:
        video = checkpointed_decode(vae, z, segments=checkpointing == "segments")
    else:
        video = vae.decode(z, return_dict=False)[0]  # [B,3,T,H,W] in [-1,1]
    return (video * 0.5 + 0.5).clamp(0, 1).transpose(1, 2)


class WanGenerator:
    """Wan text-to-video model; Wan 2.2's two experts are switched by ``boundary_ratio`` exactly as diffusers does."""

    expert_labels = EXPERTS
    lora_files = {"transformer": LORA_WEIGHTS, "transformer_2": LORA_WEIGHTS_2}

    def __init__(
        self,
        pipe: Any,
        *,
        height: int,
        width: int,
        num_frames: int,
        scheduler: str | None = None,
        shift: float = 5.0,
        negative_prompt: str = "",
        max_sequence_length: int = 512,
        decode_checkpointing: str = "frames",
    ) -> None:
        self.pipe = pipe
        self.decode_checkpointing = decode_checkpointing
        if scheduler is not None:
            pipe.scheduler = build_scheduler(scheduler, shift)
        patch = tuple(pipe.transformer.config.patch_size)
        self.latent_layout = LatentLayout(
            channels=pipe.transformer.config.in_channels,
            temporal_scale=pipe.vae_scale_factor_temporal,
            spatial_scale=pipe.vae_scale_factor_spatial,
            patch_size=(patch[1], patch[2]),
        )
        self.latent_layout.check_video_size(num_frames, height, width)
        self.height, self.width, self.num_frames = height, width, num_frames
        self.negative_prompt = negative_prompt
        self.max_sequence_length = max_sequence_length
        for module in (pipe.vae, pipe.text_encoder, pipe.transformer, pipe.transformer_2):
            if module is not None:
                module.requires_grad_(False).eval()

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls, path: str, *, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu", **kwargs: Any
    ) -> WanGenerator:
        """Load a diffusers Wan pipeline from a hub id or a local directory (the VAE stays in float32)."""
        from diffusers import AutoencoderKLWan, WanPipeline

        pipe = load_pipeline(WanPipeline, AutoencoderKLWan, path, dtype, "Wan")
        return cls(pipe.to(device), **kwargs)

    @classmethod
    def from_components(cls, components: dict[str, Any], **kwargs: Any) -> WanGenerator:
        from diffusers import WanPipeline

        return cls(WanPipeline(**components), **kwargs)

    @classmethod
    def from_config(cls, cfg: Any, device: str | torch.device = "cpu") -> WanGenerator:
        """Build from a ``drf.config.ModelConfig`` (tiny preset or ``path``)."""
        return build_from_config(cls, cfg, device, build_tiny_wan_components, shift=cfg.shift)

    def set_attention_backend(self, backend: str) -> None:
        """Switch the transformers' attention kernel (e.g. ``xformers``, ``flash``); fails early with the fix."""
        set_attention_backend(self.denoisers(), self.device, backend)

    # ----------------------------------------------------------------------------------------- protocol
    @property
    def device(self) -> torch.device:
        return self.pipe.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype

    def denoisers(self) -> list[nn.Module]:
        return [m for m in (self.pipe.transformer, self.pipe.transformer_2) if m is not None]

    def expert_names(self) -> list[str]:
        """The pipeline names of the denoisers: ``transformer`` and, for Wan 2.2 A14B, ``transformer_2``."""
        return ["transformer"] + (["transformer_2"] if self._two_experts() else [])

    def expert_of_steps(self, num_steps: int) -> list[str]:
        """Which expert (pipeline name) runs each of ``num_steps`` sampling steps: the scheduler's own timesteps
        through the routing itself, so a boundary within rounding of a timestep is decided as the chain decides."""
        return [self.expert_at(t) for t in self.scheduler(num_steps).timesteps]

    def expert_at(self, timestep: float | torch.Tensor) -> str:
        """The expert (pipeline name) that denoises at ``timestep`` (0..1000); a number is taken as the float32
        timestep tensor the chain and the trainers pass to ``velocity``."""
        t = timestep if isinstance(timestep, torch.Tensor) else torch.tensor(timestep, dtype=torch.float32)
        return "transformer" if self._model_for(t) is self.pipe.transformer else "transformer_2"

    def trainable_module(self, experts: Sequence[str] = ("transformer",)) -> nn.Module:
        """The denoiser a run trains: ``transformer`` itself, or the chosen experts together (``Experts``)."""
        if list(experts) == ["transformer"]:
            return self.pipe.transformer
        return Experts({name: getattr(self.pipe, name) for name in experts})

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], guidance_scale: float, negative_prompt: str | None = None) -> Cond:
        do_cfg = guidance_scale > 1.0
        negative = self.negative_prompt if negative_prompt is None else negative_prompt
        embeds, negative_embeds = self.pipe.encode_prompt(
            prompt=list(prompts),
            negative_prompt=[negative] * len(prompts) if do_cfg else None,
            do_classifier_free_guidance=do_cfg,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
        )
        neg = negative_embeds.to(self.dtype) if do_cfg else None
        return Cond(embeds.to(self.dtype), neg, guidance_scale)

    def init_latents(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.pipe.prepare_latents(
            batch_size,
            self.latent_layout.channels,
            self.height,
            self.width,
            self.num_frames,
            torch.float32,
            self.device,
            generator,
        )

    def scheduler(self, num_steps: int) -> Any:
        scheduler = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
        scheduler.set_timesteps(num_steps, device=self.device)
        scheduler.set_begin_index(0)
        return scheduler

    def _two_experts(self) -> bool:
        return self.pipe.config.boundary_ratio is not None and self.pipe.transformer_2 is not None

    def _model_for(self, timestep: torch.Tensor) -> nn.Module:
        ratio = self.pipe.config.boundary_ratio
        if not self._two_experts():
            return self.pipe.transformer
        boundary = ratio * self.pipe.scheduler.config.num_train_timesteps
        return self.pipe.transformer if timestep >= boundary else self.pipe.transformer_2

    def velocity(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Guided flow velocity ``[B,C,F,h,w]`` at ``timestep``, computed as ``WanPipeline`` does."""
        model = self._model_for(timestep)
        x = latents.to(self.dtype)
        t = timestep.expand(x.shape[0])
        v = model(hidden_states=x, timestep=t, encoder_hidden_states=cond.embeds, return_dict=False)[0]
        if cond.do_cfg:
            v_uncond = model(
                hidden_states=x, timestep=t, encoder_hidden_states=cond.negative_embeds, return_dict=False
            )[0]
            v = v_uncond + cond.guidance_scale * (v - v_uncond)
        return v

    def decode(self, latents: torch.Tensor, frame_indices: list[int] | None = None) -> torch.Tensor:
        """Frames ``[B,T,3,H,W]`` in [0,1], differentiable in ``latents``.

        The VAE is causal in time, so decoding only the latent prefix that covers the last wanted frame gives those
        frames exactly and skips the rest of the decode. With gradient (and ``decode_checkpointing`` frames or
        segments) the decode runs latent frame by latent frame, each recomputed in backward (``drf.models.wan_decode``),
        so its activations no longer grow with the clip.
        """
        z = latents
        if frame_indices is not None:
            if not frame_indices:
                raise ValueError("frame_indices is empty")
            z = z[:, :, : self.latent_layout.latent_prefix_for(max(frame_indices))]
        frames = decode_latents(self.pipe.vae, z, self.decode_checkpointing)
        if frame_indices is not None:
            frames = frames[:, list(frame_indices)]
        return frames

    # ----------------------------------------------------------------------------------------- LoRA
    def save_lora(self, out_dir: str | Path, weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> Path:
        """Write each expert's LoRA as diffusers' ``pytorch_lora_weights.safetensors`` (the low-noise expert's as
        ``pytorch_lora_weights_transformer_2.safetensors``), with its adapter metadata (rank, alpha, targets), so a
        stock ``WanPipeline.load_lora_weights`` reproduces this generator (``load_into_transformer_2=True`` for the
        second file). Returns the directory.

        ``weights``: each expert's (``"transformer"``, ``"transformer_2"``) LoRA tensors whole, by parameter name, to
        write instead of the modules' own; a sharded run gathers them, since its modules hold 1/N of each."""
        from diffusers import WanPipeline

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, filename in self.lora_files.items():
            module = getattr(self.pipe, name, None)
            if module is None or not getattr(module, "peft_config", None):
                continue
            write_lora(WanPipeline, module, out_dir, filename, (weights or {}).get(name))
        return out_dir

    def load_lora(self, path: str | Path) -> None:
        """Load and activate a LoRA written by :meth:`save_lora` (or any diffusers Wan LoRA file or directory); a
        directory's second-expert file goes into ``transformer_2``."""
        path = Path(path)
        if not path.exists():
            raise ModelLoadError(f"LoRA {str(path)!r} does not exist; give a directory written by save_lora")
        second = path / LORA_WEIGHTS_2 if path.is_dir() else None
        if second is not None and second.is_file():
            if not self._two_experts():
                raise ModelLoadError(f"LoRA {str(path)!r} has a {LORA_WEIGHTS_2} but this model has one transformer")
            self.pipe.load_lora_weights(str(path), weight_name=LORA_WEIGHTS_2, load_into_transformer_2=True)
            if not (path / LORA_WEIGHTS).is_file():
                return
        self.pipe.load_lora_weights(str(path))

    def to_pipeline(self) -> Any:
        """The underlying ``WanPipeline`` (shares modules), e.g. to export LoRA or compare outputs."""
        return self.pipe


FAMILY = Family(
    name="wan",
    build=WanGenerator.from_config,
    frame_step=4,
    size_multiple=16,
    schedulers=SCHEDULERS,
    tiny_presets=PRESETS,
    expert_labels=(*EXPERTS, "both"),
)
