"""The causal Wan VAE decode, latent frame by latent frame, each frame's decode recomputed in backward.

diffusers' ``AutoencoderKLWan`` already decodes one latent frame at a time, carrying a causal cache (the last input
frames of every causal convolution) from one frame to the next. With gradient, autograd keeps every frame's
activations until backward, so a decode's activation memory grows with the clip: about 18 GB per frame-megapixel in
fp32 for the Wan 2.1 VAE. Here each frame's decode is a function of (its latent frame, the cache it receives) that
returns (its pixels, the cache it passes on), run under ``torch.utils.checkpoint``: only the latents, the caches and
the pixels stay alive between frames, and one frame's activations are rebuilt at a time in backward. The caches are
small (two frames of each causal convolution's input), so memory grows far more slowly with the clip.

Same output as ``vae.decode`` and the same gradients (tested); the decoder's own modules run unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint


def _causal_conv_count(decoder: torch.nn.Module) -> int:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return sum(isinstance(m, WanCausalConv3d) for m in decoder.modules())


def _decode_frame(decoder: torch.nn.Module, x: torch.Tensor, cache: list[Any], first: bool) -> tuple[torch.Tensor, list]:
    """One latent frame's pixels and the cache after it (the input cache is left as it was, for the recompute)."""
    cache = list(cache)
    out = decoder(x, feat_cache=cache, feat_idx=[0], first_chunk=first)
    return out, cache


def checkpointed_decode(vae: Any, z: torch.Tensor) -> torch.Tensor:
    """``vae.decode(z).sample`` ([B,3,T,H,W] in [-1,1]) with per-latent-frame activation checkpointing.

    ``z`` is the VAE's (de-normalised) latent. Tiling is not used: a tiled decode's memory is bounded by its tiles.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    x = vae.post_quant_conv(z)
    cache: list[Any] = [None] * _causal_conv_count(vae.decoder)
    frames = []
    for i in range(x.shape[2]):
        out, cache = checkpoint(_decode_frame, vae.decoder, x[:, :, i : i + 1], cache, i == 0, use_reentrant=False)
        frames.append(out)
    out = torch.cat(frames, 2)
    if vae.config.patch_size is not None:
        out = unpatchify(out, patch_size=vae.config.patch_size)
    return out.clamp(-1.0, 1.0)
