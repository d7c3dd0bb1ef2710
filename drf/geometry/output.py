"""The one geometry layout every producer (teachers, the latent geometry model) hands to every consumer (rewards).

Rewards never guess layouts: poses, depth and intrinsics of a batch of videos always arrive as a ``GeometryOutput``,
checked once here, so a reward can index ``[b, t]`` without asking where the frame axis is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from drf.errors import InputError


@dataclass
class GeometryOutput:
    """Per-frame geometry of ``B`` videos with ``N`` frames each.

    c2w: [B,N,4,4] camera-to-world in OpenCV axes (x right, y down, z forward); only relative poses matter, so any
        world frame and any global scale is fine (rewards are invariant to both).
    depth: [B,N,h,w] z-depth (> 0) in the units of the poses' translations.
    intrinsics: [B,N,3,3] pinhole K for the ``h x w`` depth grid (pixel centres at j + 0.5, i + 0.5).
    static: optional [B,N,h,w] in [0,1]: how much a pixel belongs to the static, measurable scene. Zero on moving
        objects and where there is no surface (sky), so reprojection checks compare only what must agree.
    """

    c2w: Tensor
    depth: Tensor
    intrinsics: Tensor
    static: Tensor | None = None

    def __post_init__(self) -> None:
        self._check(self.c2w, "c2w", 4, (4, 4))
        self._check(self.depth, "depth", 4, None)
        self._check(self.intrinsics, "intrinsics", 4, (3, 3))
        batch, frames = self.c2w.shape[:2]
        for name in ("depth", "intrinsics"):
            lead = tuple(getattr(self, name).shape[:2])
            if lead != (batch, frames):
                raise InputError(
                    f"GeometryOutput.{name} has [B,N] = {list(lead)} but c2w has {[batch, frames]}; "
                    "all fields must describe the same videos and frames"
                )
        if self.static is not None:
            self._check(self.static, "static", 4, None)
            if self.static.shape != self.depth.shape:
                raise InputError(
                    f"GeometryOutput.static has shape {list(self.static.shape)} but depth has "
                    f"{list(self.depth.shape)}; the static mask must match depth [B,N,h,w]"
                )
        if frames < 1:
            raise InputError("GeometryOutput has no frames (N = 0)")

    @staticmethod
    def _check(t: Tensor, name: str, dims: int, tail: tuple[int, int] | None) -> None:
        if not isinstance(t, Tensor):
            raise InputError(f"GeometryOutput.{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != dims or (tail is not None and tuple(t.shape[-2:]) != tail):
            want = "[B,N,4,4]" if tail == (4, 4) else "[B,N,3,3]" if tail == (3, 3) else "[B,N,h,w]"
            raise InputError(f"GeometryOutput.{name} must be {want}, got shape {list(t.shape)}")

    @property
    def batch_size(self) -> int:
        return self.c2w.shape[0]

    @property
    def num_frames(self) -> int:
        return self.c2w.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) of the depth grid."""
        return tuple(self.depth.shape[-2:])

    def frames(self, indices: Sequence[int]) -> GeometryOutput:
        """The same videos restricted to frames ``indices`` (e.g. the pixel frames that latent frames stand for)."""
        idx = list(indices)
        return GeometryOutput(
            self.c2w[:, idx], self.depth[:, idx], self.intrinsics[:, idx],
            None if self.static is None else self.static[:, idx],
        )

    def to(self, *args, **kwargs) -> GeometryOutput:
        return GeometryOutput(
            self.c2w.to(*args, **kwargs), self.depth.to(*args, **kwargs), self.intrinsics.to(*args, **kwargs),
            None if self.static is None else self.static.to(*args, **kwargs),
        )

    def detach(self) -> GeometryOutput:
        return replace(
            self, c2w=self.c2w.detach(), depth=self.depth.detach(), intrinsics=self.intrinsics.detach(),
            static=None if self.static is None else self.static.detach(),
        )

    @staticmethod
    def cat(outputs: Sequence[GeometryOutput]) -> GeometryOutput:
        """Concatenate along the batch; all parts must agree on whether they carry a static mask."""
        has_static = {o.static is not None for o in outputs}
        if len(has_static) != 1:
            raise InputError("GeometryOutput.cat: some outputs carry a static mask and some do not")
        return GeometryOutput(
            torch.cat([o.c2w for o in outputs]), torch.cat([o.depth for o in outputs]),
            torch.cat([o.intrinsics for o in outputs]),
            torch.cat([o.static for o in outputs]) if has_static == {True} else None,
        )
