"""The causal Wan VAE decode, latent frame by latent frame, each frame's decode recomputed in backward.

diffusers' ``AutoencoderKLWan`` already decodes one latent frame at a time, carrying a causal cache (the last input
frames of every causal convolution) from one frame to the next. With gradient, autograd keeps every frame's
activations until backward, so a decode's activation memory grows with the clip: about 18 GB per frame-megapixel in
fp32 for the Wan 2.1 VAE. Here each frame's decode is a function of (its latent frame, the cache it receives) that
returns (its pixels, the cache it passes on), run under ``torch.utils.checkpoint``: only the latents, the caches and
the pixels stay alive between frames, and one frame's activations are rebuilt at a time in backward.

The caches (two frames of each causal convolution's input) are what still grows with the clip: each frame's
checkpoint keeps the cache it received. With ``segments``, and N latent frames with N/s + s < N, frames are also
grouped into segments of s = ceil(sqrt(N)). A segment runs without gradient in the forward pass and keeps only its input (latent frames and
the cache at its start); in backward it is decoded again, frame by frame under checkpoints, and backpropagated. So
about N/s + s caches live at once instead of N, for one more decode of the clip's frames.

Same output as ``vae.decode`` and the same gradients (tested); the decoder's own modules run unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def _decode_segment(
    decoder: torch.nn.Module, x: torch.Tensor, cache: list[Any], first: int
) -> tuple[torch.Tensor, list]:
    """Latent frames ``first``, ``first + 1``, ... (``x``), each under its own checkpoint; returns their pixels and
    the cache after the last."""
    frames = []
    for i in range(x.shape[2]):
        out, cache = checkpoint(_decode_frame, decoder, x[:, :, i : i + 1], cache, first + i == 0, use_reentrant=False)
        frames.append(out)
    return torch.cat(frames, 2), cache


def _split(cache: list[Any]) -> tuple[list[Any], list[torch.Tensor]]:
    """A cache as (its entries with each tensor replaced by a marker, its tensors in order)."""
    layout = [_TENSOR if isinstance(entry, torch.Tensor) else entry for entry in cache]
    return layout, [entry for entry in cache if isinstance(entry, torch.Tensor)]


def _join(layout: list[Any], tensors: Sequence[torch.Tensor]) -> list[Any]:
    found = iter(tensors)
    return [next(found) if entry is _TENSOR else entry for entry in layout]


_TENSOR = object()


class _Segment(torch.autograd.Function):
    """Latent frames decoded without gradient, keeping only their input; backward decodes them again with gradient
    (frame by frame, checkpointed) and backpropagates into the latents and the cache they started from. Inputs and
    outputs are tensors, so the cache travels flattened; ``layouts`` carries the cache's shape out of ``forward``."""

    @staticmethod
    def forward(ctx: Any, decoder: Any, first: int, layout: list, layouts: list, x: torch.Tensor, *cache: torch.Tensor):
        with torch.no_grad():
            out, after = _decode_segment(decoder, x, _join(layout, cache), first)
        after_layout, after_tensors = _split(after)
        layouts.append(after_layout)
        ctx.decoder, ctx.first, ctx.layout = decoder, first, layout
        ctx.save_for_backward(x, *cache)
        return (out, *after_tensors)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None):
        inputs = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
        with torch.enable_grad():
            out, after = _decode_segment(ctx.decoder, inputs[0], _join(ctx.layout, inputs[1:]), ctx.first)
        outputs = [out, *_split(after)[1]]
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None, None, None, *[t.grad for t in inputs])


def segment_length(frames: int) -> int:
    """Latent frames per segment: ceil(sqrt(N)) when that keeps fewer caches (N/s + s < N), else N (one segment,
    frame checkpoints only)."""
    s = math.ceil(math.sqrt(frames))
    return s if math.ceil(frames / s) + s < frames else frames


def checkpointed_decode(vae: Any, z: torch.Tensor, segments: bool = False) -> torch.Tensor:
    """``vae.decode(z).sample`` ([B,3,T,H,W] in [-1,1]) with per-latent-frame activation checkpointing; with
    ``segments``, also in segments of ``segment_length`` frames.

    ``z`` is the VAE's (de-normalised) latent. Tiling is not used: a tiled decode's memory is bounded by its tiles.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    x = vae.post_quant_conv(z)
    cache: list[Any] = [None] * _causal_conv_count(vae.decoder)
    n = x.shape[2]
    step = segment_length(n) if segments else n
    if step == n:
        out, _ = _decode_segment(vae.decoder, x, cache, 0)
    else:
        segments = []
        for start in range(0, n, step):
            layout, tensors = _split(cache)
            layouts: list[list] = []
            out, *after = _Segment.apply(vae.decoder, start, layout, layouts, x[:, :, start : start + step], *tensors)
            cache = _join(layouts[0], after)
            segments.append(out)
        out = torch.cat(segments, 2)
    if vae.config.patch_size is not None:
        out = unpatchify(out, patch_size=vae.config.patch_size)
    return out.clamp(-1.0, 1.0)
