"""``drf sample``: videos for a config's prompts from the gradient-free chain, and the run config it reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from drf.config import save_config
from drf.device import resolve_device
from drf.errors import invalid
from drf.grad_window import GradWindow
from drf.logging import LoggingConfig
from drf.models.registry import ModelConfig, load_generator
from drf.runtime import RuntimeConfig
from drf.sampling import SamplingConfig, sample
from drf.video_io import video_filename, write_video


@dataclass
class SampleRunConfig:
    """`drf sample`: generate videos for prompts and write them to a run directory."""

    name: str = field(default="sample", metadata={"help": "Run name; the run directory is output_dir/name."})
    seed: int = field(default=0, metadata={"help": "Seed of the initial noise."})
    prompts: list[str] = field(
        default_factory=lambda: ["a red cube on a checkered floor"],
        metadata={"help": "Prompts to sample, one video each."},
    )
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The video generator."})
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "The sampling chain."})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Outputs and logging."})
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig, metadata={"help": "CPU threads."})

    def validate(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise invalid("name", f"must be a plain directory name (got {self.name!r})")
        if not self.prompts:
            raise invalid("prompts", "must list at least one prompt")


def sample_videos(cfg: SampleRunConfig, out_dir: Path) -> list[Path]:
    """Sample one video per prompt with the gradient-free chain and write them (plus the resolved config)."""
    cfg.runtime.apply()
    device = resolve_device()
    generator = load_generator(cfg.model, device=device)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir)
    paths = []
    for index, prompt in enumerate(cfg.prompts):
        rng = torch.Generator(device).manual_seed(cfg.seed + index)
        with torch.no_grad():
            cond = generator.encode_prompts([prompt], cfg.sampling.guidance_scale)
            rollout = sample(generator, cond, GradWindow.none(cfg.sampling.num_steps), rng=rng)
            frames = generator.decode(rollout.latents)[0]
        path = out_dir / video_filename(index, prompt, cfg.logging.video_format)
        paths.append(write_video(path, frames.float().cpu(), fps=cfg.logging.fps))
    return paths
