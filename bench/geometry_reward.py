"""Geometry reward from latents vs from pixels, on the same toy-world videos: seconds per batch and their ratio.

Latent path: the latent geometry model on the generator's latents [B,16,3,h,w], then the geometry rewards.
Pixel path: VAE decode to [B,9,3,64,64], then a pixel-space geometry network, then the same rewards. The pixel-space
network is the LGM architecture reading 8x8 pixel patches of the frames the latent frames stand for (a stitching
layer over 192 patch channels instead of 16 latent channels): the cheapest pixel model of the same capacity, so the
ratio is a lower bound — a real pixel-space model such as VGGT-1B costs far more than this stand-in.
Uses the shipped toy VAE and LGM when present, otherwise seeded random ones (timings do not depend on the weights).
"""

import statistics
import time

import torch
import torch.nn.functional as F

from drf.geometry.distill import encode_latents, latent_frame_indices
from drf.geometry.lgm import LatentGeometryModel, LGMConfig
from drf.geometry.rewards import geometry_rewards
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_FRAMES, sample_scenes
from drf.toyworld.train.lgm import load_vae, toy_lgm_path

BATCH = 4
REPEATS = 5


def seconds(fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    vae, vae_source = load_vae()
    path = toy_lgm_path()
    lgm = LatentGeometryModel.from_pretrained(path) if (path / "config.json").is_file() else LatentGeometryModel()
    lgm.eval()
    pixel_model = LatentGeometryModel(LGMConfig(**{**lgm.config.__dict__, "latent_channels": 3 * 8 * 8, "patch": 1}))
    pixel_model.eval()
    scenes = sample_scenes(BATCH, seed=5, num_frames=WORLD_FRAMES)
    latents = encode_latents(vae, torch.stack([render(s, WORLD_FRAMES).rgb for s in scenes]))
    motions = [s.camera.motion for s in scenes]
    frames_idx = latent_frame_indices(WORLD_FRAMES)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)

    @torch.no_grad()
    def latent_path():
        return geometry_rewards(lgm(latents), motions)

    @torch.no_grad()
    def decode():
        video = vae.decode(latents * std + mean, return_dict=False)[0]  # [B,3,T,64,64] in [-1,1]
        return (video * 0.5 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def pixel_geometry(video):
        frames = video[:, :, frames_idx]  # [B,3,F,64,64]
        b, c, f, h, w = frames.shape
        patches = F.pixel_unshuffle(frames.transpose(1, 2).reshape(b * f, c, h, w), 8)  # [B*F,192,8,8]
        patches = patches.reshape(b, f, -1, h // 8, w // 8).transpose(1, 2)
        return geometry_rewards(pixel_model(patches), motions)

    video = decode()
    t_latent = seconds(latent_path)
    t_decode = seconds(decode)
    t_pixel_geom = seconds(lambda: pixel_geometry(video))
    t_pixel = t_decode + t_pixel_geom
    print(
        f"setup: batch {BATCH}, 64x64x{WORLD_FRAMES} clips, latents {list(latents.shape)}, 1 thread, VAE: {vae_source}, "
        f"LGM: {path if (path / 'config.json').is_file() else 'random'}"
    )
    print(f"latent path (LGM + rewards): {t_latent * 1000:.1f} ms per batch")
    print(f"pixel path, VAE decode: {t_decode * 1000:.1f} ms per batch")
    print(f"pixel path, pixel geometry stand-in + rewards: {t_pixel_geom * 1000:.1f} ms per batch")
    print(f"pixel path total: {t_pixel * 1000:.1f} ms per batch")
    print(f"latent geometry reward speed-up (pixel / latent): {t_pixel / t_latent:.1f}x")


if __name__ == "__main__":
    main()
