"""Qwen2-VL and Qwen2.5-VL critics: one adapter, the family differences kept as data.

Frames go in either as one video (``pixel_values_videos``, ``video_grid_thw``) or as one image per frame; positions
are Qwen's multimodal RoPE (``get_rope_index`` with ``mm_token_type_ids``), computed for the full sequence so the
shared prefix and every question's remainder see the same positions as a single forward would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from critics.config import CriticConfig
from critics.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, qwen_preprocess
from critics.vlm import HFVisionCritic, VisionInputs


@dataclass(frozen=True)
class QwenFamily:
    """What differs between the Qwen VL generations."""

    name: str
    model_class: str
    config_class: str
    timed_video_positions: bool  # Qwen2.5-VL spaces temporal positions by seconds per temporal patch


QWEN_FAMILIES = {
    "qwen2_vl": QwenFamily("qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLConfig", False),
    "qwen2_5_vl": QwenFamily("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLConfig", True),
}

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"


class QwenVLCritic(HFVisionCritic):
    template_name = "qwen2_vl.j2"

    def __init__(
        self,
        model,
        tokenizer,
        config: CriticConfig,
        family: QwenFamily,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
    ):
        super().__init__(model, tokenizer, config)
        self.family = family
        vision = model.config.vision_config
        self.patch_size = vision.patch_size
        self.merge_size = vision.spatial_merge_size
        self.temporal_patch_size = vision.temporal_patch_size
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.as_images = config.frames_as == "images"
        self.image_token_id = model.config.image_token_id
        self.video_token_id = model.config.video_token_id

    def vision_placeholder(self, num_frames: int) -> str:
        if self.as_images:
            return f"{VISION_START}{IMAGE_PAD}{VISION_END}" * num_frames
        return f"{VISION_START}{VIDEO_PAD}{VISION_END}"

    @property
    def placeholder_id(self) -> int:
        return self.image_token_id if self.as_images else self.video_token_id

    def prepare_vision(self, frames: torch.Tensor) -> VisionInputs:
        patches, grids = qwen_preprocess(
            frames,
            self.patch_size,
            self.merge_size,
            self.temporal_patch_size,
            self.config.min_pixels,
            self.config.max_pixels,
            self.image_mean,
            self.image_std,
            as_images=self.as_images,
        )
        grid = torch.tensor(grids, dtype=torch.long, device=frames.device)
        counts = [t * h * w // self.merge_size**2 for t, h, w in grids]
        if self.as_images:
            return VisionInputs({"pixel_values": patches, "image_grid_thw": grid}, counts)
        inputs = {"pixel_values_videos": patches, "video_grid_thw": grid}
        if self.family.timed_video_positions:
            seconds = self.temporal_patch_size / self.config.video_fps
            inputs["second_per_grid_ts"] = torch.tensor([seconds], device=frames.device)
        return VisionInputs(inputs, counts)

    def vision_features(self, vision: VisionInputs) -> torch.Tensor:
        inner = self.model.model
        if self.as_images:
            out = inner.get_image_features(vision.model_inputs["pixel_values"], vision.model_inputs["image_grid_thw"])
        else:
            mi = vision.model_inputs
            out = inner.get_video_features(mi["pixel_values_videos"], mi["video_grid_thw"])
        return torch.cat(list(out.pooler_output), dim=0)

    def official_kwargs(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        types = torch.zeros_like(ids, dtype=torch.int)
        types[ids == self.image_token_id] = 1
        types[ids == self.video_token_id] = 2
        return {"mm_token_type_ids": types}

    def position_ids(self, ids: torch.Tensor, attention_mask: torch.Tensor, vision: VisionInputs) -> torch.Tensor:
        rows = ids.shape[0]
        # get_rope_index walks one grid iterator across the batch, so every row needs its own copy of the grids.
        kwargs = {k: v.repeat(rows, *([1] * (v.ndim - 1))) for k, v in vision.model_inputs.items() if "grid" in k}
        if "second_per_grid_ts" in vision.model_inputs:
            kwargs["second_per_grid_ts"] = vision.model_inputs["second_per_grid_ts"].repeat(rows)
        positions, _ = self.model.model.get_rope_index(
            ids, attention_mask=attention_mask, **self.official_kwargs(ids), **kwargs
        )
        return positions
