"""Procedural toy-world scenes: what is where, how it moves, and how the camera moves — everything needed to render a
video, write its prompt and answer questions about it exactly.

World axes are y-up with the floor at y = 0. Directions of motion ("left", "toward") are defined in the frame-0 camera:
"left" is camera-left as seen at frame 0, "toward" is towards the frame-0 camera along its horizontal forward axis.
Relations ("left of", "in front of") are also judged at frame 0: left/right by the horizontal image position of the
objects' centres, front/behind by their camera z-depth (undetermined when the depths differ by less than DEPTH_GAP).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from drf.errors import InputError
from drf.geometry.camera import intrinsics_from_fov, look_at, project_points, rotation_about_y

SHAPES = ("cube", "sphere", "cylinder")
# Saturated colours whose hues stay apart (>= 25 degrees) so pixel colour masks separate them from each other and from
# the grey floor and pale sky; Lambert shading scales RGB, which keeps hue and saturation.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "orange": (0.95, 0.50, 0.05),
    "yellow": (0.90, 0.85, 0.10),
    "green": (0.10, 0.75, 0.15),
    "cyan": (0.10, 0.80, 0.85),
    "blue": (0.15, 0.25, 0.90),
    "purple": (0.60, 0.15, 0.85),
}
# Half-extent of each primitive: sphere radius, cube half side, cylinder radius (a cylinder is 2 * size tall).
SIZES: dict[str, float] = {"small": 0.5, "large": 0.8}
OBJECT_MOTIONS = ("none", "left", "right", "toward", "away")
CAMERA_MOTIONS = ("static", "pan_left", "pan_right", "dolly_in", "dolly_out", "orbit_left", "orbit_right")
RELATIONS = ("left_of", "right_of", "in_front_of", "behind")
# The world ``sample_scene`` draws from: the renderer draws everything above (tests and the geometry tools use it), the
# world keeps a small vocabulary on purpose. Four colours whose hues are >= 55 degrees apart, two shapes, two sizes,
# one or two objects, three camera moves and three object motions still cover every alignment aspect (object, colour,
# count, size, spatial relation, object motion, camera motion), colours stay apart after a lossy VAE, and a toy VAE
# and T2V model trained on two CPU cores can learn all of it.
WORLD_SHAPES = ("cube", "sphere")
WORLD_COLORS = ("red", "yellow", "green", "blue")
WORLD_OBJECT_MOTIONS = ("none", "left", "right")
WORLD_CAMERA_MOTIONS = ("static", "pan_left", "pan_right")
WORLD_FRAMES = 9  # frames per clip: a pan or a slide reads in 9 frames, and 9 cost half of 17 in every model
# The floor's two tile tones (grey: saturation 0 so they never pass for an object colour). One palette: a second
# one would be visible variation that no caption names.
FLOOR: tuple[tuple[float, float, float], tuple[float, float, float]] = ((0.35, 0.35, 0.35), (0.62, 0.62, 0.62))
# (colour, shape) combinations that only appear in the eval split: none, so held-out prompts test new scenes and
# phrasings of known combinations (a compositional hold-out over 8 combinations would leave too few for training).
HELD_OUT_COMBOS: frozenset[tuple[str, str]] = frozenset()
# Share of the remaining scenes sent to eval by a hash of their description.
EVAL_HASH_FRACTION = 0.1
TARGET_HEIGHT = 0.4
# Frame-0 camera depths closer than this leave "in front of"/"behind" undetermined (never stated, never scored).
DEPTH_GAP = 0.9


def _check_choice(what: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise InputError(f"toy world: {what} {value!r} is not one of {', '.join(valid)}")


@dataclass(frozen=True)
class ObjectSpec:
    """One primitive resting on the floor; ``travel`` is its world (dx, dz) displacement over the whole video."""

    shape: str
    color: str
    size: str
    position: tuple[float, float]  # world (x, z) of the base centre at frame 0
    yaw: float = 0.0  # radians about world y (matters for cubes)
    motion: str = "none"
    travel: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("shape", self.shape, SHAPES),
            ("color", self.color, tuple(COLORS)),
            ("size", self.size, tuple(SIZES)),
            ("motion", self.motion, OBJECT_MOTIONS),
        ):
            _check_choice(f"object {name}", value, valid)

    @property
    def extent(self) -> float:
        return SIZES[self.size]

    @property
    def height(self) -> float:
        return 2.0 * self.extent

    def base_positions(self, num_frames: int) -> Tensor:
        """World base centres [T,3] (y = 0) at each frame; motion is linear in time."""
        s = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
        x = self.position[0] + s * self.travel[0]
        z = self.position[1] + s * self.travel[1]
        return torch.stack([x, torch.zeros_like(x), z], dim=-1)


@dataclass(frozen=True)
class CameraPath:
    """A camera move over the video: frame-0 ``eye`` looking at ``target`` (by default the world's one start pose), then ``motion`` by ``amount``
    (degrees for pan/orbit, world units for dolly), plus optional seeded hand-held ``jitter`` (world units)."""

    motion: str = "static"
    eye: tuple[float, float, float] = (0.0, 1.9, -5.4)  # the world's one start pose
    target: tuple[float, float, float] = (0.0, TARGET_HEIGHT, 0.0)
    fov_deg: float = 62.0
    amount: float = 0.0
    jitter: float = 0.0
    jitter_seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("camera motion", self.motion, CAMERA_MOTIONS)

    def eyes_and_targets(self, num_frames: int) -> tuple[Tensor, Tensor]:
        """World eye and target positions [T,3] before jitter."""
        s = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
        eye0 = torch.tensor(self.eye, dtype=torch.float64)
        target0 = torch.tensor(self.target, dtype=torch.float64)
        eyes = eye0.expand(num_frames, 3).clone()
        targets = target0.expand(num_frames, 3).clone()
        if self.motion in ("pan_left", "pan_right"):
            # Positive rotation about y turns the view to the camera's left (see rotation_about_y).
            sign = 1.0 if self.motion == "pan_left" else -1.0
            rot = rotation_about_y(sign * math.radians(self.amount) * s)  # [T,3,3]
            targets = eyes + (rot @ (target0 - eye0)[:, None]).squeeze(-1)
        elif self.motion in ("dolly_in", "dolly_out"):
            sign = 1.0 if self.motion == "dolly_in" else -1.0
            forward = target0 - eye0
            forward[1] = 0.0
            forward = forward / forward.norm()
            shift = sign * self.amount * s[:, None] * forward
            eyes, targets = eyes + shift, targets + shift
        elif self.motion in ("orbit_left", "orbit_right"):
            # Positive rotation of the eye about the target's vertical axis moves the camera to its right.
            sign = 1.0 if self.motion == "orbit_right" else -1.0
            rot = rotation_about_y(sign * math.radians(self.amount) * s)
            eyes = target0 + (rot @ (eye0 - target0)[:, None]).squeeze(-1)
        return eyes, targets

    def poses(self, num_frames: int) -> Tensor:
        """c2w [T,4,4] (float64, OpenCV axes) for each frame."""
        eyes, targets = self.eyes_and_targets(num_frames)
        if self.jitter > 0:
            gen = torch.Generator().manual_seed(self.jitter_seed)
            eyes = eyes + self.jitter * torch.randn(num_frames, 3, generator=gen, dtype=torch.float64)
            targets = targets + 2.0 * self.jitter * torch.randn(num_frames, 3, generator=gen, dtype=torch.float64)
        return look_at(eyes, targets)


@dataclass(frozen=True)
class Scene:
    """A complete toy-world scene; ``seed`` fixes the prompt's phrasing choices too."""

    objects: tuple[ObjectSpec, ...]
    camera: CameraPath = field(default_factory=CameraPath)
    seed: int = 0

    def object_centers(self, num_frames: int) -> Tensor:
        """World centres [T,n,3] of every object at each frame."""
        centers = [o.base_positions(num_frames) + torch.tensor([0.0, o.extent, 0.0], dtype=torch.float64)
                   for o in self.objects]
        return torch.stack(centers, dim=1)

    def camera_coords(self, frame: int = 0, num_frames: int = WORLD_FRAMES) -> Tensor:
        """Object centres in the camera coordinates of ``frame`` [n,3] (x right, y down, z forward)."""
        c2w = self.camera.poses(num_frames)[frame]
        centers = self.object_centers(num_frames)[frame]
        w2c_rot = c2w[:3, :3].T
        return (centers - c2w[:3, 3]) @ w2c_rot.T

    def relation(self, a: int, b: int, relation: str) -> bool | None:
        """Whether object ``a`` stands in ``relation`` to object ``b`` at frame 0 (None: depths too close to tell)."""
        cam = self.camera_coords()
        bearing = cam[:, 0] / cam[:, 2]
        if relation == "left_of":
            return bool(bearing[a] < bearing[b])
        if relation == "right_of":
            return bool(bearing[a] > bearing[b])
        if relation in ("in_front_of", "behind") and abs(cam[a, 2] - cam[b, 2]) < DEPTH_GAP:
            return None
        if relation == "in_front_of":
            return bool(cam[a, 2] < cam[b, 2])
        if relation == "behind":
            return bool(cam[a, 2] > cam[b, 2])
        raise ValueError(f"unknown relation {relation!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        objects = tuple(
            ObjectSpec(**{**o, "position": tuple(o["position"]), "travel": tuple(o["travel"])}) for o in data["objects"]
        )
        cam = data["camera"]
        camera = CameraPath(**{**cam, "eye": tuple(cam["eye"]), "target": tuple(cam["target"])})
        return cls(objects, camera, seed=data["seed"])

    def description(self) -> str:
        """A canonical text of the scene's content (used to hash it into a split)."""
        objs = sorted(f"{o.size} {o.color} {o.shape} {o.motion}" for o in self.objects)
        return "; ".join(objs) + f" | camera {self.camera.motion}"


def split_of(scene: Scene) -> str:
    """"eval" for scenes with a held-out (colour, shape) combination or in the hashed eval share, else "train"."""
    if any((o.color, o.shape) in HELD_OUT_COMBOS for o in scene.objects):
        return "eval"
    digest = hashlib.sha1(scene.description().encode()).digest()
    return "eval" if int.from_bytes(digest[:4], "big") / 2**32 < EVAL_HASH_FRACTION else "train"


# ---------------------------------------------------------------------------------------------------------------
# Sampling


# World v2: nothing visible varies unless the prompt says so. The camera starts at one pose and is static or pans by
# one angle; objects stand on three slots across the frame-0 view (one object: the centre; two: left and right, so
# "left of" fixes the layout) with a small jitter; a slide covers one distance; cubes keep one yaw. What the prompt
# states (shapes, colours, sizes, count, relation, motion, camera) is all that varies.
SLOTS = {"left": -1.3, "center": 0.0, "right": 1.3}  # frame-0 camera-right offsets, world units
SLOT_JITTER = 0.08  # world units, in x and z
CAMERA_AMOUNTS = {"pan": 7.0, "dolly": 1.5, "orbit": 30.0}  # degrees (pan, orbit) or world units (dolly)
SLIDE_DISTANCE = 1.0  # world units (0.53 camera heights)
CUBE_YAW = 0.4  # radians: two faces in view, so a cube never reads as a flat square
CUBE_YAW_JITTER = 0.05
# Group layouts: counts of identical objects per group (each group has its own colour).
_GROUP_LAYOUTS = ((1,), (1, 1), (2,))
_GROUP_WEIGHTS = (0.4, 0.4, 0.2)
_MOTION_PROB = 0.4
_MARGIN_PX_FRACTION = 0.1  # object centres stay this far inside the image at every frame


def world_camera(motion: str) -> CameraPath:
    """The world's camera: the one start pose, then ``motion`` by its one amount."""
    amount = 0.0 if motion == "static" else CAMERA_AMOUNTS[motion.split("_")[0]]
    return CameraPath(motion=motion, amount=amount)


def _frame0_axes(camera: CameraPath) -> tuple[Tensor, Tensor]:
    """Horizontal unit (right, forward) world vectors of the frame-0 camera."""
    forward = torch.tensor(camera.target, dtype=torch.float64) - torch.tensor(camera.eye, dtype=torch.float64)
    forward[1] = 0.0
    forward = forward / forward.norm()
    right = torch.stack([-forward[2], torch.zeros(()), forward[0]])  # forward x up
    return right, forward


def _covered_fraction(d: Tensor, r_near: Tensor, r_far: Tensor) -> Tensor:
    """Share of a disc of radius ``r_far`` covered by a disc of radius ``r_near`` whose centre is ``d`` away."""
    d = d.clamp_min(1e-9)
    a = ((d**2 + r_far**2 - r_near**2) / (2 * d * r_far)).clamp(-1, 1)
    b = ((d**2 + r_near**2 - r_far**2) / (2 * d * r_near)).clamp(-1, 1)
    k = ((-d + r_far + r_near) * (d + r_far - r_near) * (d - r_far + r_near) * (d + r_far + r_near)).clamp_min(0)
    lens = r_far**2 * torch.acos(a) + r_near**2 * torch.acos(b) - 0.5 * k.sqrt()
    return (lens / (math.pi * r_far**2)).clamp(0, 1)


class _Layout:
    """Objects placed so far, with their projections cached, so each candidate is checked only against them.

    Rules: objects stay whole in view (centres and base centres inside the margin, sides inside the frame) and mostly
    unoccluded at every frame, never interpenetrate, and every pair is clearly
    left/right of each other with silhouettes apart at frame 0 (front/behind is stated only where depths differ by
    DEPTH_GAP).
    """

    def __init__(self, camera: CameraPath, num_frames: int) -> None:
        self.frames = min(num_frames, 9)
        self.c2w = camera.poses(self.frames)
        self.K = intrinsics_from_fov(camera.fov_deg, 64, 64, dtype=torch.float64)
        self.objects: list[ObjectSpec] = []
        self.cache: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # centres [F,3], uv [F,2], z [F], radius [F]

    def _project(self, o: ObjectSpec) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        base = o.base_positions(self.frames)
        centers = base + torch.tensor([0.0, o.extent, 0.0], dtype=torch.float64)
        uv, z = project_points(torch.stack([centers, base], 1), self.K.expand(self.frames, 3, 3), self.c2w)
        # Silhouette as a disc of radius 1.2 extents (covers a cube's diagonal), in pixels.
        return centers, uv[:, 0], z[:, 0], 1.2 * o.extent * self.K[0, 0] / z[:, 0], uv[:, 1]

    def add(self, o: ObjectSpec) -> bool:
        """Place ``o`` if it fits with the objects placed so far."""
        centers, uv, z, radius, base_uv = self._project(o)
        lo, hi = 64 * _MARGIN_PX_FRACTION, 64 * (1 - _MARGIN_PX_FRACTION)
        if (z < 1.5).any() or (uv < lo).any() or (uv > hi).any() or (base_uv[:, 1] > hi).any():
            return False
        half_width = 1.3 * o.extent * self.K[0, 0] / z  # whole silhouettes stay inside the frame
        if (uv[:, 0] - half_width < 1).any() or (uv[:, 0] + half_width > 63).any():
            return False
        for other, (c2, uv2, z2, r2) in zip(self.objects, self.cache):
            gap = (centers[:, [0, 2]] - c2[:, [0, 2]]).norm(dim=-1).min()
            if gap < 1.5 * (o.extent + other.extent) + 0.1:
                return False
            # Frame 0: bearings (x/z in the camera) apart by more than the two half-widths.
            half_widths = 1.45 * (o.extent / z[0] + other.extent / z2[0])
            if abs(uv[0, 0] - uv2[0, 0]) / self.K[0, 0] < half_widths + 0.03:
                return False
            near, far = (radius, r2) if z[0] < z2[0] else (r2, radius)
            if (_covered_fraction((uv - uv2).norm(dim=-1), near, far) > 0.4).any():
                return False
        self.objects.append(o)
        self.cache.append((centers, uv, z, radius))
        return True


def _draw_scene(rng: random.Random, seed: int, num_frames: int, camera_motions: tuple[str, ...]) -> Scene | None:
    """One draw of camera move, object kinds, slots and motion; None when the objects do not all fit in view (the
    caller draws again, so what the prompt states is all that varies)."""
    camera = world_camera(rng.choice(camera_motions))
    right, fwd = _frame0_axes(camera)
    layout = rng.choices(_GROUP_LAYOUTS, weights=_GROUP_WEIGHTS)[0]
    colors = rng.sample(WORLD_COLORS, len(layout))
    kinds: list[tuple[str, str, str]] = []
    for count, color in zip(layout, colors):
        kinds += [(rng.choice(WORLD_SHAPES), color, rng.choice(tuple(SIZES)))] * count
    slots = ("center",) if len(kinds) == 1 else ("left", "right")
    counts = [count for count in layout for _ in range(count)]
    singles = [i for i, count in enumerate(counts) if count == 1]
    mover = rng.choice(singles) if singles and rng.random() < _MOTION_PROB else None
    direction = rng.choice(WORLD_OBJECT_MOTIONS[1:]) if mover is not None else "none"
    placed = _Layout(camera, num_frames)
    for i, ((shape, color, size), slot) in enumerate(zip(kinds, slots)):
        jitter = torch.tensor([rng.uniform(-1, 1), rng.uniform(-1, 1)], dtype=torch.float64) * SLOT_JITTER
        pos = SLOTS[slot] * right + jitter[0] * right + jitter[1] * fwd
        moves = i == mover
        travel = SLIDE_DISTANCE * (right if direction == "right" else -right) if moves else torch.zeros(3)
        yaw = CUBE_YAW + rng.uniform(-1, 1) * CUBE_YAW_JITTER if shape == "cube" else 0.0
        candidate = ObjectSpec(shape, color, size, (float(pos[0]), float(pos[2])), yaw=yaw,
                               motion=direction if moves else "none", travel=(float(travel[0]), float(travel[2])))
        if not placed.add(candidate):
            return None
    return Scene(tuple(placed.objects), camera, seed=seed)


def sample_scene(
    seed: int,
    split: str | None = None,
    num_frames: int = WORLD_FRAMES,
    max_tries: int = 10_000,
    camera_motions: tuple[str, ...] = WORLD_CAMERA_MOTIONS,
) -> Scene:
    """A random valid scene, fully determined by ``seed`` (and ``split``: "train", "eval" or None for either).

    ``camera_motions`` widens the world's camera moves (the latent geometry model learns from all of them)."""
    if split not in (None, "train", "eval"):
        raise InputError(f"toy world: split must be 'train', 'eval' or None, got {split!r}")
    for motion in camera_motions:
        _check_choice("camera motion", motion, CAMERA_MOTIONS)
    rng = random.Random(seed)
    for _ in range(max_tries):
        scene = _draw_scene(rng, seed, num_frames, camera_motions)
        if scene is not None and (split is None or split_of(scene) == split):
            return scene
    raise RuntimeError(f"no valid scene after {max_tries} tries for seed {seed}")


def sample_scenes(
    count: int,
    seed: int = 0,
    split: str | None = None,
    num_frames: int = WORLD_FRAMES,
    camera_motions: tuple[str, ...] = WORLD_CAMERA_MOTIONS,
) -> list[Scene]:
    """``count`` scenes; scene i depends only on (seed, i), so datasets extend without changing earlier scenes."""
    return [sample_scene(seed * 1_000_003 + i, split, num_frames, camera_motions=camera_motions) for i in range(count)]
