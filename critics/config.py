"""The ``critic`` config section: which frozen VLM answers the questions, and how it sees the frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from critics.augment import AugmentConfig
from drf.config import load_section
from drf.errors import ConfigError, InputError

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "llava")
DTYPES = ("float32", "float16", "bfloat16", "float64")
QUANTIZATIONS = ("none", "4bit", "8bit")
FRAMES_AS = ("video", "images")
BINARY_REWARDS = ("logprob", "margin")


@dataclass
class CriticConfig:
    family: str = field(
        default="qwen2_5_vl",
        metadata={"help": f"VLM family of the critic; one of {', '.join(FAMILIES)}."},
    )
    path: str = field(
        default="",
        metadata={
            "path": "model",
            "help": "Hub id or local directory passed to from_pretrained; empty with `tiny` set builds a tiny one.",
        },
    )
    tiny: bool = field(
        default=False,
        metadata={"help": "Build the family's tiny offline critic (random weights) instead of loading `path`."},
    )
    dtype: str = field(
        default="float32",
        metadata={
            "help": f"Weight dtype; one of {', '.join(DTYPES)}. Rewards are computed in float32 (float64 for a float64 critic)."
        },
    )
    device: str = field(
        default="cpu",
        metadata={"help": "Device for the critic ('cpu', 'cuda', 'cuda:1'); frames are moved there before scoring."},
    )
    quantization: str = field(
        default="none",
        metadata={
            "help": f"Weight quantization with bitsandbytes (the `quant` extra); one of {', '.join(QUANTIZATIONS)}."
        },
    )
    frames_as: str = field(
        default="video",
        metadata={"help": "Feed frames as one video input or as a list of images; one of video, images (Qwen only)."},
    )
    binary_reward: str = field(
        default="logprob",
        metadata={
            "help": "Binary reward: 'logprob' = log p(expected) renormalised over yes/no tokens; "
            "'margin' = log p(yes) - log p(no), sign flipped when 'no' is expected."
        },
    )
    prompt_template: str = field(
        default="",
        metadata={"help": "Path to a jinja2 chat prompt overriding the family's critics/templates/<family>.j2."},
    )
    system_prompt: str = field(
        default="You are a careful video critic. Answer the question about the video.",
        metadata={"help": "System message given to the critic before the video."},
    )
    shared_prefix: bool = field(
        default=True,
        metadata={"help": "Encode each video and system prompt once and reuse it for all its questions (KV cache)."},
    )
    max_rows: int = field(
        default=32,
        metadata={
            "help": "Most question rows (a question has one per answer option) scored in one forward; a "
            "video's rows are run in chunks of this many, shortest first, so memory does not grow with the "
            "padded length of its longest question times its question count."
        },
    )
    max_explain_tokens: int = field(
        default=64,
        metadata={"help": "Upper bound on generated tokens per explanation."},
    )
    explain_do_sample: bool = field(
        default=False,
        metadata={"help": "Sample explanations instead of greedy decoding."},
    )
    explain_temperature: float = field(
        default=0.7,
        metadata={"help": "Sampling temperature for explanations (used when explain_do_sample)."},
    )
    explain_top_p: float = field(
        default=0.9,
        metadata={"help": "Nucleus sampling mass for explanations (used when explain_do_sample)."},
    )
    max_pixels: int = field(
        default=224 * 224,
        metadata={"help": "Qwen: upper bound on pixels per frame after resizing (rounded to 28-pixel multiples)."},
    )
    min_pixels: int = field(
        default=56 * 56,
        metadata={"help": "Qwen: lower bound on pixels per frame after resizing."},
    )
    image_size: int = field(
        default=0,
        metadata={"help": "LLaVA: square input size of the vision tower; 0 reads it from the model config."},
    )
    video_fps: float = field(
        default=2.0,
        metadata={"help": "Frame rate the frames represent; Qwen2.5-VL spaces temporal positions by it."},
    )
    augment: AugmentConfig = field(
        default_factory=AugmentConfig,
        metadata={"help": "Training and evaluation rewards as the mean over random crops, blurs and noise of each "
                  "video (off by default); see docs/trainer.md."},
    )  # fmt: skip

    def validate(self) -> None:
        choices = {
            "family": FAMILIES,
            "dtype": DTYPES,
            "quantization": QUANTIZATIONS,
            "frames_as": FRAMES_AS,
            "binary_reward": BINARY_REWARDS,
        }
        for key, allowed in choices.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(f"critic.{key} is {value!r}; expected one of {', '.join(allowed)}")
        if not self.tiny and not self.path:
            raise ConfigError("critic.path is empty; set it to a hub id or directory, or set critic.tiny=true")
        if self.max_rows < 1:
            raise ConfigError(f"critic.max_rows is {self.max_rows}; it must be >= 1")
        if self.max_explain_tokens < 1:
            raise ConfigError(f"critic.max_explain_tokens is {self.max_explain_tokens}; it must be >= 1")
        if self.min_pixels > self.max_pixels:
            raise ConfigError(f"critic.min_pixels ({self.min_pixels}) exceeds critic.max_pixels ({self.max_pixels})")


def critic_config_from_file(path: str | Path) -> CriticConfig:
    """A CriticConfig from a YAML file: its ``critic:`` section (a run config) or the whole file (a bare section)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such critic config; give a YAML file with a critic: section")
    return load_section(path, CriticConfig, "critic", whole_file=True)


def default_critic_config() -> CriticConfig:
    """The critic used when none is named: the tiny offline one (random weights, for trying the tools only)."""
    return CriticConfig(family="qwen2_vl", tiny=True)
