"""LLaVA critics (llava-hf, CLIP vision tower + projector + LLaMA-style decoder): frames as one image each.

Each frame is resized on its shortest edge, centre-cropped to the tower's square input and normalised exactly as
``CLIPImageProcessor`` does, then becomes ``(size / patch)^2`` image tokens (one more with the "full" strategy).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from critics.config import CriticConfig
from critics.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_preprocess
from critics.vlm import HFVisionCritic, VisionInputs

IMAGE_TOKEN = "<image>"


class LlavaCritic(HFVisionCritic):
    template_name = "llava.j2"

    def __init__(
        self,
        model,
        tokenizer,
        config: CriticConfig,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
    ):
        super().__init__(model, tokenizer, config)
        cfg = model.config
        self.image_size = config.image_size or cfg.vision_config.image_size
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.feature_layer = cfg.vision_feature_layer
        self.select_strategy = cfg.vision_feature_select_strategy
        patches = (self.image_size // cfg.vision_config.patch_size) ** 2
        self.tokens_per_frame = patches + (1 if self.select_strategy == "full" else 0)
        self._placeholder_id = cfg.image_token_id

    def vision_placeholder(self, num_frames: int) -> str:
        return IMAGE_TOKEN * num_frames

    @property
    def placeholder_id(self) -> int:
        return self._placeholder_id

    def prepare_vision(self, frames: torch.Tensor) -> VisionInputs:
        size = self.image_size
        pixels = clip_preprocess(frames, size, (size, size), self.image_mean, self.image_std)
        return VisionInputs({"pixel_values": pixels}, [self.tokens_per_frame] * frames.shape[0])

    def vision_features(self, vision: VisionInputs) -> torch.Tensor:
        pixels = vision.model_inputs["pixel_values"].to(self.model.model.vision_tower.dtype)
        out = self.model.model.get_image_features(
            pixels, vision_feature_layer=self.feature_layer, vision_feature_select_strategy=self.select_strategy
        )
        return torch.cat(list(out.pooler_output), dim=0)

    def position_ids(self, ids: torch.Tensor, attention_mask: torch.Tensor, vision: VisionInputs) -> torch.Tensor:
        return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
