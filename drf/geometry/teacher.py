"""Teachers: where geometry labels come from — exact toy-world renders, or a geometry foundation model on a GPU.

A teacher maps a batch of videos (or toy-world scenes) to a ``GeometryOutput``; the latent geometry model is
distilled from whichever teacher fits the domain. The toy world has exact labels (``drf.toyworld.teacher``); real
videos need a model such as VGGT or MapAnything, plugged in through ``FoundationTeacher``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from drf.errors import ModelLoadError
from drf.geometry.camera import invert_pose
from drf.geometry.output import GeometryOutput


@runtime_checkable
class Teacher(Protocol):
    """``teacher(videos) -> GeometryOutput``: videos are frames [B,T,3,H,W] in [0,1] or, for teachers that can
    re-render, scene descriptions; the output has one entry per requested frame."""

    def __call__(self, videos: Any) -> GeometryOutput: ...


class FoundationTeacher:
    """Adapter point for a geometry foundation model (VGGT, MapAnything, Any4D) on a GPU.

    ``predict(model, frames [T,3,H,W] in [0,1]) -> dict(c2w [T,4,4] OpenCV, depth [T,h,w], intrinsics [T,3,3],
    optional static [T,h,w])`` is the only model-specific code; write one per model family. Models returning
    world-to-camera extrinsics (VGGT does) must invert them in ``predict``. The model package is imported lazily so
    drf installs without it; a missing package raises a one-line ``ModelLoadError`` naming what to install.
    """

    def __init__(
        self,
        package: str,
        load: Callable[[Any], Any],
        predict: Callable[[Any, Tensor], dict[str, Tensor]],
        device: str | torch.device = "cuda",
        install_hint: str | None = None,
    ) -> None:
        try:
            module = importlib.import_module(package)
        except ImportError:
            hint = install_hint or f"pip install {package}"
            raise ModelLoadError(
                f"geometry teacher needs the '{package}' package, which is not installed; {hint} (on a GPU machine)"
            ) from None
        self.model = load(module)
        self.predict = predict
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> GeometryOutput:
        outs = []
        for video in frames:
            pred = self.predict(self.model, video.to(self.device))
            outs.append(GeometryOutput(
                pred["c2w"][None].float().cpu(), pred["depth"][None].float().cpu(),
                pred["intrinsics"][None].float().cpu(),
                None if pred.get("static") is None else pred["static"][None].float().cpu(),
            ))
        return GeometryOutput.cat(outs)


def vggt_teacher(device: str | torch.device = "cuda") -> FoundationTeacher:
    """VGGT (facebookresearch/vggt) as a teacher; needs ``pip install vggt`` and its weights on a GPU machine."""

    def load(module: Any) -> Any:
        from vggt.models.vggt import VGGT  # type: ignore[import-not-found]

        return VGGT.from_pretrained("facebook/VGGT-1B").to(device).eval()

    def predict(model: Any, frames: Tensor) -> dict[str, Tensor]:
        from vggt.utils.pose_enc import pose_encoding_to_extri_intri  # type: ignore[import-not-found]

        out = model(frames)
        extri, intri = pose_encoding_to_extri_intri(out["pose_enc"], frames.shape[-2:])
        w2c = torch.eye(4, device=extri.device).repeat(extri.shape[1], 1, 1)
        w2c[:, :3, :4] = extri[0]
        return {"c2w": invert_pose(w2c), "depth": out["depth"][0, ..., 0], "intrinsics": intri[0]}

    return FoundationTeacher("vggt", load, predict, device, install_hint="pip install vggt (facebookresearch/vggt)")
