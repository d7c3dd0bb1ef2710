"""The per-latent-frame checkpointed Wan decode: diffusers' frames and gradients exactly, far fewer saved activations."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan

from drf.models.wan_decode import checkpointed_decode
from tests.fixtures.wan import tiny_generator

VAES = {
    "wan2.1": dict(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]),
    # Wan 2.2's residual VAE: patchified pixels, DupUp3D upsampling with its first-chunk rule.
    "wan2.2": dict(base_dim=8, z_dim=16, in_channels=12, out_channels=12, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                   temperal_downsample=[False, True, True], is_residual=True, patch_size=2, scale_factor_spatial=16),
}  # fmt: skip


def saved_bytes(fn) -> int:
    """Bytes autograd keeps for backward while ``fn`` runs (outside checkpointed regions)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("segments", [False, True])  # 7 latent frames: segments of 3, 3 and 1 (segment_length)
@pytest.mark.parametrize("name", list(VAES))
def test_checkpointed_decode_equals_diffusers_in_frames_and_gradient(name, segments):
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**VAES[name]).eval().requires_grad_(False)
    z = torch.randn(1, 16, 7, 4, 4, requires_grad=True)
    weights = None
    outputs, grads = [], []
    for decode in (lambda: vae.decode(z).sample, lambda: checkpointed_decode(vae, z, segments)):
        out = decode()
        weights = torch.randn_like(out, generator=torch.Generator().manual_seed(1)) if weights is None else weights
        (grad,) = torch.autograd.grad((out * weights).sum(), z)
        outputs.append(out)
        grads.append(grad)
    assert (outputs[1] - outputs[0]).abs().max() <= 1e-5
    assert (grads[1] - grads[0]).norm() <= 1e-4 * grads[0].norm()


def test_generator_decode_checkpoints_only_with_gradient_and_keeps_few_activations():
    gen = tiny_generator()
    latents = torch.randn(1, 16, 4, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def decode(checkpointing: str) -> torch.Tensor:
        gen.decode_checkpointing = checkpointing
        return gen.decode(latents)

    try:
        plain, checkpointed = saved_bytes(lambda: decode("none")), saved_bytes(lambda: decode("frames"))
        torch.testing.assert_close(decode("frames"), decode("none"), rtol=0, atol=1e-6)
        with torch.no_grad():
            assert saved_bytes(lambda: decode("frames")) == 0
    finally:
        gen.decode_checkpointing = "frames"
    assert checkpointed < 0.25 * plain, (checkpointed, plain)


def test_long_clips_are_checkpointed_in_segments_of_about_the_square_root():
    from drf.models.wan_decode import segment_length

    assert [segment_length(n) for n in (1, 3, 5, 6, 9, 21)] == [1, 3, 5, 3, 3, 5]
