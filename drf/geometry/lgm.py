"""The latent geometry model (LGM): per-frame depth, camera pose and focal length read straight from a video
generator's latents, so geometry rewards need no VAE decode and no pixel-space geometry network.

Layout (one output frame per latent frame, N = F: Wan's latent frame k stands for pixel frame 4k, i.e. 0, 4, 8, ...):
- a stitching ``Conv3d`` maps the generator's latent channels to ``dim`` features per token of ``patch`` x ``patch``
  latent pixels (3 latent frames deep, so image motion is visible from the first layer);
- a trunk of blocks alternating spatial attention (within a frame, plus one camera token per frame) and temporal
  attention (across frames at each position, camera tokens included), each followed by an MLP;
- a matching branch: per-frame features of frame t correlated with frame 0's at every shift up to ``match_radius``
  latent pixels, softmaxed over shifts and averaged in each image quadrant — a pan moves all quadrants alike, a dolly
  moves them apart, an orbit moves near and far parts by different amounts — which feeds the pose head;
- heads: log-depth at ``upsample`` x the latent resolution (pixel shuffle), a static-surface logit at the same
  resolution, pose of each frame relative to frame 0 from (camera token t, camera token 0) as a 6D rotation plus a
  translation, and one focal length per clip from the pooled camera tokens.

Scale: geometry from a video has no metric scale, so the model works in units of the median depth of frame 0's static
surface: its depths and translations are both divided by that median. Frame 0's pose is the identity.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drf.errors import InputError, ModelLoadError
from drf.geometry.output import GeometryOutput
from drf.hub import looks_local, model_folder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Latent geometry models shipped with drf, by the name a config may give instead of a path.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "assets" / "geometry"
SHIPPED_LGMS = {"toyworld": "toy_lgm"}


@dataclass
class LGMConfig:
    """Architecture of a latent geometry model."""

    latent_channels: int = field(default=16, metadata={"help": "Channels of the generator's latents (Wan: 16)."})
    dim: int = field(default=64, metadata={"help": "Width of the trunk."})
    blocks: int = field(default=2, metadata={"help": "Trunk blocks (each: spatial attention, temporal attention)."})
    heads: int = field(default=4, metadata={"help": "Attention heads."})
    mlp_ratio: int = field(default=2, metadata={"help": "MLP width as a multiple of dim."})
    patch: int = field(
        default=1, metadata={"help": "Latent pixels per token side (the stitching conv's stride); tokens = latent / patch."}
    )
    upsample: int = field(default=2, metadata={"help": "Depth/static grid = token grid x this."})
    max_frames: int = field(default=32, metadata={"help": "Longest clip in latent frames (temporal embedding)."})
    max_side: int = field(default=64, metadata={"help": "Largest latent height or width (spatial embedding)."})
    temporal_scale: int = field(
        default=4, metadata={"help": "Pixel frames per latent frame; latent frame k labels pixel frame k * this."}
    )
    match_dim: int = field(default=32, metadata={"help": "Width of the per-frame features matched against frame 0."})
    match_radius: int = field(
        default=3, metadata={"help": "Largest shift (latent pixels) at which frame t is correlated with frame 0."}
    )


def rotation_from_6d(x: Tensor) -> Tensor:
    """Rotation matrices [...,3,3] from 6D vectors [...,6] (the first two columns, Gram-Schmidt; Zhou et al. 2019)."""
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # [S,L,D] -> [S,L,D] (residual added)
        s, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(s, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(s, n, d)
        return x + self.out(y)


class _Block(nn.Module):
    """Spatial attention within each frame, temporal attention at each position, then an MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.spatial = _Attention(dim, heads)
        self.temporal = _Attention(dim, heads)
        self.mlp = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:  # [B,F,L,D]
        b, f, n, d = x.shape
        x = self.spatial(x.reshape(b * f, n, d)).reshape(b, f, n, d)
        x = self.temporal(x.transpose(1, 2).reshape(b * n, f, d)).reshape(b, n, f, d).transpose(1, 2)
        return x + self.mlp(x)


class LatentGeometryModel(nn.Module):
    """``model(latents [B,C,F,h,w]) -> GeometryOutput`` with N = F frames and a (h*up) x (w*up) depth grid.

    ``latents`` are in the generator's own (normalised) latent space, the tensors its transformer denoises.
    """

    def __init__(self, config: LGMConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or LGMConfig()
        if cfg.dim % cfg.heads:
            raise InputError(f"LGMConfig.dim ({cfg.dim}) must be divisible by heads ({cfg.heads})")
        p = cfg.patch
        self.stitch = nn.Conv3d(cfg.latent_channels, cfg.dim, kernel_size=(3, p + 2, p + 2), stride=(1, p, p), padding=1)
        self.row_embed = nn.Parameter(torch.randn(cfg.max_side, cfg.dim) * 0.02)
        self.col_embed = nn.Parameter(torch.randn(cfg.max_side, cfg.dim) * 0.02)
        self.time_embed = nn.Parameter(torch.randn(cfg.max_frames, cfg.dim) * 0.02)
        self.camera_token = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.dim)
        up2 = cfg.upsample**2
        self.depth_head = nn.Linear(cfg.dim, up2)
        self.static_head = nn.Linear(cfg.dim, up2)
        self.match = nn.Conv2d(cfg.latent_channels, cfg.match_dim, kernel_size=p + 2, stride=p, padding=1)
        self.match_temperature = nn.Parameter(torch.tensor(10.0))
        match_features = 4 * (2 * cfg.match_radius + 1) ** 2
        self.pose_head = nn.Sequential(
            nn.Linear(2 * cfg.dim + match_features, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim), nn.GELU(),
            nn.Linear(cfg.dim, 9),
        )
        self.focal_head = nn.Linear(cfg.dim, 1)
        with torch.no_grad():  # start at identity rotations, zero translation, unit depth, 50-degree field of view
            self.pose_head[-1].weight.mul_(0.01)
            self.pose_head[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0, 0, 0, 0]))
            self.focal_head.bias.fill_(0.07)

    def _check(self, latents: Tensor) -> None:
        cfg = self.config
        if latents.dim() != 5 or latents.shape[1] != cfg.latent_channels:
            raise InputError(
                f"latent geometry model expects latents [B,{cfg.latent_channels},F,h,w], got {list(latents.shape)}"
            )
        f, h, w = latents.shape[2:]
        if h % (2 * cfg.patch) or w % (2 * cfg.patch):
            raise InputError(
                f"latent height and width ({h}x{w}) must be multiples of 2 x patch ({2 * cfg.patch}) for this model"
            )
        if f > cfg.max_frames or max(h, w) > cfg.max_side or f < 1:
            raise InputError(
                f"latents of {f} frames at {h}x{w} exceed the model's limits ({cfg.max_frames} frames, "
                f"side {cfg.max_side}); build the model with a larger LGMConfig"
            )

    def features(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """Trunk output: camera tokens [B,F,D] and pixel tokens [B,F,h*w,D]."""
        self._check(latents)
        x = self.stitch(latents.to(self.stitch.weight.dtype))  # [B,D,F,h,w]
        b, d, f, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1) + self.row_embed[:h, None] + self.col_embed[None, :w]  # [B,F,h,w,D]
        x = x.reshape(b, f, h * w, d)
        cam = self.camera_token.expand(b, f, 1, d)
        x = torch.cat([cam, x], dim=2) + self.time_embed[:f, None]
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, :, 0], x[:, :, 1:]

    def matching(self, latents: Tensor) -> Tensor:
        """[B,F,4*(2r+1)^2]: for each frame, per image quadrant, the softmax over shifts of its feature correlation
        with frame 0 (frame t's content at p + shift against frame 0's at p)."""
        b, c, f, h, w = latents.shape
        r = self.config.match_radius
        x = latents.to(self.match.weight.dtype).transpose(1, 2).reshape(b * f, c, h, w)
        feats = self.match(x)
        h, w = feats.shape[-2:]
        feats = F.normalize(feats, dim=1).reshape(b, f, -1, h, w)
        padded = F.pad(feats, (r, r, r, r))
        ref = feats[:, :1]
        corr = torch.stack(
            [(padded[..., r + dy : r + dy + h, r + dx : r + dx + w] * ref).sum(2)
             for dy in range(-r, r + 1) for dx in range(-r, r + 1)],
            dim=-1,
        )  # [B,F,h,w,S]
        prob = torch.softmax(self.match_temperature * corr, dim=-1)
        quadrants = prob.reshape(b, f, 2, h // 2, 2, w // 2, -1).mean(dim=(3, 5))  # [B,F,2,2,S]
        return quadrants.reshape(b, f, -1)

    def forward(self, latents: Tensor) -> GeometryOutput:
        cfg = self.config
        cam, pix = self.features(latents)
        b, f, hw, _ = pix.shape
        h, w = latents.shape[3] // cfg.patch, latents.shape[4] // cfg.patch
        up = cfg.upsample

        def grid(head: nn.Linear) -> Tensor:  # [B,F,h*w,D] -> [B,F,h*up,w*up]
            y = head(pix).reshape(b * f, h, w, up * up).permute(0, 3, 1, 2)
            return F.pixel_shuffle(y, up).reshape(b, f, h * up, w * up)

        depth = torch.exp(grid(self.depth_head).clamp(-8, 8))
        static = torch.sigmoid(grid(self.static_head))
        pose = self.pose_head(torch.cat([cam, cam[:, :1].expand_as(cam), self.matching(latents)], dim=-1))  # [B,F,9]
        c2w = torch.zeros(b, f, 4, 4, dtype=pose.dtype, device=pose.device)
        c2w[..., :3, :3] = rotation_from_6d(pose[..., :6])
        c2w[..., :3, 3] = pose[..., 6:]
        c2w[..., 3, 3] = 1.0
        c2w = torch.cat([torch.eye(4, dtype=c2w.dtype, device=c2w.device).expand(b, 1, 4, 4), c2w[:, 1:]], dim=1)
        height, width = h * up, w * up
        focal = torch.exp(self.focal_head(cam.mean(1)))[:, 0] * height  # focal / grid height, pooled over frames
        K = torch.zeros(b, f, 3, 3, dtype=pose.dtype, device=pose.device)
        K[..., 0, 0] = K[..., 1, 1] = focal[:, None]
        K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = width / 2, height / 2, 1.0
        return GeometryOutput(c2w=c2w, depth=depth, intrinsics=K, static=static)

    def pixel_frames(self, num_latent_frames: int) -> list[int]:
        """The pixel frames that the model's output frames stand for."""
        return [k * self.config.temporal_scale for k in range(num_latent_frames)]

    # ------------------------------------------------------------------------------------------------ save/load
    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
        return path

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device = "cpu", key: str = "latent geometry model"
    ) -> LatentGeometryModel:
        """Load ``config.json`` + ``model.safetensors`` written by ``save_pretrained``; ``directory`` may also name
        a shipped model (``SHIPPED_LGMS``, e.g. "toyworld") or a hub id (``owner/name``, from the local cache when
        offline). ``key``: the config key that named it, for errors."""
        from safetensors.torch import load_file

        name = str(directory)
        if name in SHIPPED_LGMS:
            path = SHIPPED_DIR / SHIPPED_LGMS[name]
        elif looks_local(name):
            path = Path(directory).expanduser()
        else:
            path = model_folder(name, key, CONFIG_FILE)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise ModelLoadError(
                    f"latent geometry model directory {str(path)!r} has no {name}; point at a directory written by "
                    "LatentGeometryModel.save_pretrained (e.g. drf/assets/geometry/toy_lgm)"
                )
        raw = json.loads((path / CONFIG_FILE).read_text())
        known = {f.name for f in fields(LGMConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelLoadError(f"{path / CONFIG_FILE}: unknown LGM config key {unknown[0]!r}")
        model = cls(LGMConfig(**raw))
        try:
            model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ModelLoadError(f"{path / WEIGHTS_FILE} does not match its config.json: {first}") from None
        return model.to(device).eval()
