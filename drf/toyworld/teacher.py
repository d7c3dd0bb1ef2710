"""Exact geometry labels for toy-world scenes, read off the renderer (depth, poses, intrinsics, object masks).

``RenderTeacher`` is the toy world's ``drf.geometry.teacher.Teacher``: the latent geometry model is distilled from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from drf.geometry.output import GeometryOutput
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_FRAMES


def geometry_from_render(
    render: Any, moving: Sequence[bool] = (), frames: Sequence[int] | None = None
) -> GeometryOutput:
    """A one-video ``GeometryOutput`` [1,N,...] from a toy-world ``RenderOutput``.

    ``moving[k]`` says whether object k moves; static = a surface was hit (not sky) and it is no moving object.
    """
    idx = list(range(render.depth.shape[0])) if frames is None else list(frames)
    static = render.valid.clone()
    for k, moves in enumerate(moving):
        if moves:
            static &= ~render.masks[:, k]
    return GeometryOutput(
        c2w=render.c2w[None, idx], depth=render.depth[None, idx], intrinsics=render.K[None, idx],
        static=static[None, idx].to(render.depth.dtype),
    )


class RenderTeacher:
    """Exact labels for toy-world scenes by rendering them: ``teacher(scenes) -> GeometryOutput`` [B,N,H,W].

    ``frames`` picks which rendered frames to label (e.g. the pixel frames 0, 4, 8, 12, 16 that Wan's latent frames
    stand for).
    """

    def __init__(
        self, num_frames: int = WORLD_FRAMES, height: int = 64, width: int = 64, frames: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.num_frames, self.height, self.width = num_frames, height, width
        self.frames = None if frames is None else list(frames)
        self.dtype = dtype

    def __call__(self, scenes: Sequence[Any]) -> GeometryOutput:
        outs = []
        for scene in scenes:
            r = render(scene, self.num_frames, self.height, self.width, dtype=self.dtype)
            moving = [o.motion != "none" for o in scene.objects]
            outs.append(geometry_from_render(r, moving, self.frames))
        return GeometryOutput.cat(outs)
