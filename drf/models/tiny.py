"""Tiny components of every model family built from config dicts, for tests, benches and the toy world.

No weights can be downloaded here or in CI, so everything that normally comes from the hub is built from a config:
the transformer, the VAE, a small (U)T5 encoder and a word-level tokenizer over a fixed vocabulary.
Presets are keyed by family: ``PRESETS`` (Wan) and ``LTX_PRESETS``, each registered with its family's ``Family``.
Presets are plain dicts so benches can scale one knob (layers, width) without a new code path. The real loading path
(``from_pretrained``) is exercised by saving these components with ``save_pretrained`` and loading them back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from drf.errors import ConfigError

# The tiny tokenizer's whole-word pieces: every word of the toy world's prompts (tests/toyworld check the whole grammar)
# plus common English. A word outside the list falls back to single characters, so any ASCII prompt encodes; a word
# inside it is one token, so a small text encoder reads "left" as one thing instead of spelling it.
PROMPT_WORDS = tuple(
    (
        "a an the one two three small large big red green blue yellow purple orange cyan white black grey gray "
        "cube cubes sphere spheres cylinder cylinders ball box object objects floor checkered sky scene video "
        "left right of in front behind next to on under above near far toward towards away from camera pans pan "
        "dolly dollies zoom zooms orbit orbits static still moves move rolls roll slides slide while and with is are "
        "it its this that there here cat dog person car tree house walking running jumping flying water light dark "
        "bright shadow motion slowly quickly high quality blurry sharp low resolution artifacts flicker"
    ).split()
)
_PUNCTUATION = tuple(",.;:!?'\"()-")
_CHARACTERS = tuple("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + _PUNCTUATION


def build_tokenizer():
    """A T5 (unigram) tokenizer with one piece per word of ``PROMPT_WORDS`` and per punctuation mark, and single
    characters as the fallback for other words (anything else is ``<unk>``).

    The vocabulary is written down rather than learned: a unigram model trained on a small corpus split the toy
    world's own words into letters (``left`` -> ``▁l e f t``). Whole words score 0 and characters -10, so the best
    segmentation of a listed word is the word itself. ``T5Tokenizer(vocab=[(piece, score), ...])`` is used because
    ``vocab_file=`` is silently ignored by transformers 5.
    """
    from transformers import T5Tokenizer

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [("\u2581" + word, 0.0) for word in PROMPT_WORDS]
    fallback = [("\u2581", -5.0)] + [(char, -10.0) for char in _CHARACTERS]
    punctuation = [(mark, 0.0) for mark in _PUNCTUATION]
    vocab = specials + words + punctuation + [piece for piece in fallback if piece[0] not in _PUNCTUATION]
    return T5Tokenizer(vocab=vocab, extra_ids=0, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


@dataclass(frozen=True)
class TinyWanPreset:
    """Config dicts for one tiny Wan-architecture model; ``vae`` uses base_dim >= 8 so decodes are smooth."""

    transformer: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    scheduler: dict[str, Any] = field(default_factory=lambda: {"shift": 5.0})
    boundary_ratio: float | None = None  # set: a second, independently initialised expert (Wan 2.2 A14B layout)


_TEXT_ENCODER = dict(
    vocab_size=384,
    d_model=32,
    d_kv=8,
    d_ff=37,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
    feed_forward_proj="gated-gelu",
    pad_token_id=0,
    eos_token_id=1,
)

# ~1.3M parameters: 64 tokens per 16x16 latent frame at patch (1, 2, 2).
_SMALL_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=4,
    attention_head_dim=32,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=512,
    num_layers=4,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=64,
)

PRESETS: dict[str, TinyWanPreset] = {
    # 28k-parameter transformer: unit tests and parity checks.
    "wan-tiny": TinyWanPreset(
        transformer=dict(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        ),
        vae=dict(
            base_dim=8,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        ),
        text_encoder=_TEXT_ENCODER,
    ),
    # ~1.3M-parameter transformer whose activations dominate memory at 64x64x17: benches.
    "wan-small": TinyWanPreset(
        transformer=_SMALL_TRANSFORMER,
        vae=dict(
            base_dim=16,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        ),
        text_encoder=_TEXT_ENCODER,
    ),
    # The toy world's text-to-video model (drf toyworld train vae / t2v). Patch (1, 2, 2) on the 16x16 latent grid
    # gives 64 tokens per latent frame, fine enough for a 6-10 pixel object (patch (1, 4, 4), 16 tokens a frame, drew
    # texture only). The VAE compresses 4x in space and time (z 16): at 8x spatial it lost object colour entirely
    # within the training budget.
    "wan-toyworld": TinyWanPreset(
        transformer={**_SMALL_TRANSFORMER, "text_dim": 64},  # the toy text encoder is 64 wide
        vae=dict(
            base_dim=16,
            z_dim=16,
            dim_mult=[1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[True, True],
            scale_factor_spatial=4,
        ),
        text_encoder=dict(
            vocab_size=384,
            d_model=64,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=16,
            relative_attention_max_distance=64,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
            dropout_rate=0.0,
        ),
    ),
}
# wan-tiny with Wan 2.2 A14B's two experts: the high-noise one above timestep 875, the low-noise one below.
PRESETS["wan-tiny-experts"] = dataclasses.replace(PRESETS["wan-tiny"], boundary_ratio=0.875)


def preset(name: str) -> TinyWanPreset:
    if name not in PRESETS:
        raise ConfigError(f"unknown tiny model preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def build_tiny_wan_components(name: str = "wan-tiny", seed: int = 0, **transformer_overrides: Any) -> dict[str, Any]:
    """Randomly initialised components (seeded) in the keyword layout of ``WanPipeline(**components)``."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    spec = preset(name)
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(**{**spec.transformer, **transformer_overrides})
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(**spec.vae)
    torch.manual_seed(seed + 2)
    text_encoder = UMT5EncoderModel(UMT5Config(**spec.text_encoder))
    components = {
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": build_tokenizer(),
        "scheduler": FlowMatchEulerDiscreteScheduler(**spec.scheduler),
    }
    if spec.boundary_ratio is not None:
        torch.manual_seed(seed + 3)
        components["transformer_2"] = WanTransformer3DModel(**{**spec.transformer, **transformer_overrides}).eval()
        components["boundary_ratio"] = spec.boundary_ratio
    return components


def save_tiny_wan(directory: str, name: str = "wan-tiny", seed: int = 0) -> str:
    """Write a tiny Wan pipeline directory in the standard diffusers layout; returns the directory."""
    from diffusers import WanPipeline

    WanPipeline(**build_tiny_wan_components(name, seed)).save_pretrained(directory)
    return directory


@dataclass(frozen=True)
class TinyLTXPreset:
    """Config dicts for one tiny LTX-Video model. The VAE keeps LTX-Video's own compression (32x in space through a
    4x4 patch and three 2x stages, 8x in time), so tiny runs obey the real family's 8n+1 frames and multiples of 32."""

    transformer: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    # LTX-Video 0.9's scheduler: sigmas shifted by the video's token count (mu), as LTXPipeline does.
    scheduler: dict[str, Any] = field(
        default_factory=lambda: dict(
            use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
            max_image_seq_len=4096, shift_terminal=0.1,
        )
    )  # fmt: skip


LTX_PRESETS: dict[str, TinyLTXPreset] = {
    # diffusers' own LTX test sizes (4 heads x 8 dims, 8 latent channels), two layers, LTX-Video's compression.
    "ltx-tiny": TinyLTXPreset(
        transformer=dict(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=2,
            caption_channels=32,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, True, False),
            decoder_spatio_temporal_scaling=(True, True, True, False),
            patch_size=4,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        ),
        text_encoder=_TEXT_ENCODER,  # T5 v1.1 layout (gated-gelu), as LTX-Video's T5-XXL
    ),
}


def build_tiny_ltx_components(name: str = "ltx-tiny", seed: int = 0) -> dict[str, Any]:
    """Randomly initialised components (seeded) in the keyword layout of ``LTXPipeline(**components)``."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    if name not in LTX_PRESETS:
        raise ConfigError(f"unknown tiny LTX preset {name!r}; available: {', '.join(sorted(LTX_PRESETS))}")
    spec = LTX_PRESETS[name]
    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(**spec.transformer)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLLTXVideo(**spec.vae)
    torch.manual_seed(seed + 2)
    text_encoder = T5EncoderModel(T5Config(**spec.text_encoder))
    return {
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": build_tokenizer(),
        "scheduler": FlowMatchEulerDiscreteScheduler(**spec.scheduler),
    }
