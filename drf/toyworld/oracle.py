"""The toy-world oracle: answers the toy questions about any video from its pixels alone.

It is the independent measure of generated videos — never a training reward — so it uses no learned weights and
no scene metadata, only what the toy world's look guarantees: saturated object colours from a known palette, a grey
checkered floor, a pale sky, and the toy camera's field of view.

- objects: HSV colour masks (hue nearest a palette colour, high saturation), then connected components; the count of
  a colour is the most frequent number of components over the first frames (identical objects start apart);
- size: apparent height over the distance from the object's bottom to the horizon (the sky/floor boundary), which
  cancels the distance to the camera: about object height / camera height;
- shape: shading structure of the side band (a sphere's shading changes down the columns; a cube shows flat faces),
  voted over frames and object pieces; a piece seen whole whose silhouette is not a primitive's (convex, compact,
  about as wide as tall) votes for neither, so an amorphous blob of the right colour is not taken for a cube or sphere;
- relations: left/right by centroid x at the start, in front/behind by the floor distance of the base centre (from
  the bottom row, the horizon and the object's width: closer objects stand lower);
- camera motion: an 8-parameter planar flow (exact for small motions of a plane) fitted to the floor between
  consecutive frames by Gauss-Newton (Lucas-Kanade); pans shift all floor rows alike, orbits shift near and far rows
  differently, dollies expand or contract the floor;
- object motion: the object's base centre, mapped back to frame 0 through the floor flows and converted to floor
  coordinates with the horizon, fitted by a straight line over the frames where nothing nearer touches it: a
  displacement across is left/right, along is toward/away; no answer when those frames miss either end.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from drf.errors import InputError
from drf.toyworld.facts import Facts, ObjectFacts, answer, answer_and_score, correct, template_name
from drf.toyworld.floor_flow import fit_planar_flow, flow_at, map_to_frame0
from drf.toyworld.scene import COLORS, WORLD_COLORS, CameraPath

# The palette the oracle knows is the world's: toy-world videos show no other object colours, and with hues >= 55
# degrees apart a generated object whose hue drifts by up to 25 degrees is still named right.
COLOR_NAMES = WORLD_COLORS
MIN_SATURATION = 0.45
MIN_VALUE = 0.12
MAX_HUE_DISTANCE = 25.0  # degrees from the nearest palette hue (the palette's hues are >= 55 degrees apart)
MIN_AREA_FRACTION = 6 / 4096  # components smaller than this share of the frame are noise


def _hue_of(rgb: tuple[float, float, float]) -> float:
    r, g, b = rgb
    mx, mn = max(rgb), min(rgb)
    if mx == r:
        h = ((g - b) / (mx - mn)) % 6
    elif mx == g:
        h = (b - r) / (mx - mn) + 2
    else:
        h = (r - g) / (mx - mn) + 4
    return 60.0 * h


PALETTE_HUES = torch.tensor([_hue_of(COLORS[c]) for c in COLOR_NAMES])


def rgb_to_hsv(video: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hue in degrees, saturation and value, each [T,H,W], of ``video`` [T,3,H,W] in [0,1]."""
    r, g, b = video.unbind(1)
    mx, arg = video.max(1)
    mn = video.min(1).values
    delta = mx - mn
    safe = delta.clamp_min(1e-8)
    h = torch.where(arg == 0, ((g - b) / safe).remainder(6), torch.where(arg == 1, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 1e-8, h * 60.0, torch.zeros_like(h))
    s = torch.where(mx > 1e-8, delta / mx.clamp_min(1e-8), torch.zeros_like(mx))
    return h, s, mx


def color_labels(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """[T,H,W] palette index of each object pixel, -1 elsewhere."""
    diff = (h[..., None] - PALETTE_HUES).abs()
    diff = torch.minimum(diff, 360 - diff)
    dist, idx = diff.min(-1)
    ok = (s >= MIN_SATURATION) & (v >= MIN_VALUE) & (dist <= MAX_HUE_DISTANCE)
    return torch.where(ok, idx, torch.full_like(idx, -1))


def connected_components(mask: Tensor) -> Tensor:
    """8-connected component labels [N,H,W] (0 background, else a per-image id) of ``mask`` [N,H,W] bool.

    Label propagation: every pixel takes the largest label in its 3x3 neighbourhood until nothing changes.
    """
    n, h, w = mask.shape
    ids = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, h, w).expand(n, h, w)
    labels = torch.where(mask, ids, torch.zeros_like(ids))[:, None]
    m = mask[:, None].float()
    for _ in range(h * w):
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * m
        if torch.equal(grown, labels):
            break
        labels = grown
    return labels[:, 0].long()


def sky_and_floor(h: Tensor, s: Tensor, v: Tensor, objects: Tensor) -> tuple[Tensor, Tensor]:
    """Masks [T,H,W] of the pale-blue sky and of the grey floor."""
    sky = (h >= 185) & (h <= 250) & (s >= 0.05) & (s < MIN_SATURATION) & (v >= 0.7) & ~objects
    floor = (s < 0.12) & ~sky & ~objects
    return sky, floor


def horizon_rows(sky: Tensor, floor: Tensor) -> Tensor:
    """Per-frame horizon row [T] (pixel units, 0 = top edge): the summed sky share of each row, so a sharp boundary
    at row r gives r and a blended row counts by its share."""
    sky_rows = sky.float().sum(-1)
    both = sky_rows + floor.float().sum(-1)
    share = torch.where(both > 0, sky_rows / both.clamp_min(1), torch.zeros_like(both))
    return share.sum(-1)


# ---------------------------------------------------------------------------------------------------------------
# Facts from pixels


@dataclass
class Track:
    """A singly-coloured object (or group) over the frames; per-frame stats are NaN where it is not visible."""

    color: str
    count: int
    area: Tensor  # [T]
    centroid: Tensor  # [T,2]
    bottom: Tensor  # [T,2] contact point: mean column of the lowest rows, lower edge of the lowest row
    height: Tensor  # [T] rows spanned
    width: Tensor  # [T] columns spanned
    clean: Tensor  # [T] bool: seen whole, neither cut by the frame edge nor touching a nearer object
    touching: list[set[str]] = field(default_factory=list)  # per frame, colours of the objects it touches
    shape_votes: Counter = field(default_factory=Counter)


@dataclass
class VideoFacts(Facts):
    """Facts measured from pixels, plus the measurements behind them (for debugging and reports)."""

    tracks: list[Track] = field(default_factory=list)
    horizon: Tensor | None = None  # [T]
    flows: Tensor | None = None  # [T-1,8]
    camera_features: dict[str, float] = field(default_factory=dict)


def _shape_vote(region_v: Tensor, mask: Tensor) -> str | None:
    """Guess a shape from one silhouette ``mask`` [h,w] and the value channel ``region_v`` [h,w] over its bounding box.

    Looks at the side band (45-90 % of the height, below any top face): a sphere's shading changes down each column,
    a cube's faces are flat down each column.
    """
    rows, cols = mask.shape
    if int(mask.sum()) < 20 or rows < 5 or cols < 4:
        return None
    inner = mask.clone()
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    band = inner.clone()
    band[: int(0.45 * rows)] = False
    band[int(0.9 * rows) + 1 :] = False
    used = [c for c in range(cols) if int(band[:, c].sum()) >= 2]
    if len(used) < 4:
        return None
    columns = [region_v[band[:, c], c] for c in used]
    within = float(torch.cat([col - col.mean() for col in columns]).std())
    return "sphere" if within > SPHERE_WITHIN_STD else "cube"


SPHERE_WITHIN_STD = 0.045  # brightness std down the columns of the side band: spheres >= 0.06, cubes <= 0.03
BLOB = "blob"  # the vote of a silhouette that is neither a cube's nor a sphere's

# Silhouettes of whole primitives in renders (1,384 pieces of 60 eval-split scenes): fill of the bounding box >= 0.72,
# overlap with the box's inscribed ellipse >= 0.80, width / height 0.85-1.25, every row and column one run; the
# thresholds leave a margin (blurred VAE round trips and small objects), and 77 % of whole blobs drawn by the T2V fail.
MIN_FILL, MIN_ELLIPSE_IOU, ASPECT_RANGE, MIN_CONVEXITY = 0.68, 0.75, (0.75, 1.4), 0.95
# A sphere's outline is its ellipse: 95 % of whole rendered sphere pieces overlap it >= 0.87 (median 0.95; cubes 0.84),
# while 63 % of the T2V blobs that pass the checks above with a sphere's shading fall below 0.85 (lumpy, flat-sided).
SPHERE_MIN_ELLIPSE_IOU = 0.85


def _runs_filled(mask: Tensor) -> float:
    """Share of each row's span (first to last pixel) that the mask fills, over all rows: 1.0 for a convex shape."""
    filled = mask.any(1)
    first = mask.float().argmax(1)
    last = mask.shape[1] - 1 - mask.flip(1).float().argmax(1)
    span = (last - first + 1)[filled]
    return float(mask.sum()) / max(1, int(span.sum()))


def _ellipse_iou(mask: Tensor) -> float:
    """Overlap (IoU) of ``mask`` [h,w], cropped to its bounding box, with the box's inscribed ellipse."""
    rows, cols = mask.shape
    yy = (torch.arange(rows) + 0.5) / rows * 2 - 1
    xx = (torch.arange(cols) + 0.5) / cols * 2 - 1
    ellipse = yy[:, None] ** 2 + xx[None, :] ** 2 <= 1
    return float((ellipse & mask).sum()) / max(1, int((ellipse | mask).sum()))


def is_primitive_silhouette(mask: Tensor, shape: str | None = None) -> bool:
    """Whether ``mask`` [h,w], cropped to its bounding box, could be a whole cube or sphere seen by the toy camera
    (with ``shape``: that shape)."""
    rows, cols = mask.shape
    iou = _ellipse_iou(mask)
    return (
        float(mask.float().mean()) >= MIN_FILL
        and iou >= (SPHERE_MIN_ELLIPSE_IOU if shape == "sphere" else MIN_ELLIPSE_IOU)
        and ASPECT_RANGE[0] <= cols / rows <= ASPECT_RANGE[1]
        and min(_runs_filled(mask), _runs_filled(mask.T)) >= MIN_CONVEXITY
    )


def _touches_border(mask: Tensor) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _grown(mask: Tensor) -> Tensor:
    """``mask`` [h,w] and its 8 neighbours."""
    return F.max_pool2d(mask.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0


def _lowest_row(mask: Tensor) -> int:
    return int(mask.any(1).nonzero().max())


def _seen_whole(mask: Tensor, others: list[Tensor]) -> bool:
    """Neither cut by the frame's border nor touching a nearer object (``others``: the other objects' pieces), which
    may hide part of it. Objects stand on the floor, so the nearer of two reaches lower in the image; a patch of
    another colour that does not (a highlight on a blob, a stray smear above it) hides nothing."""
    if _touches_border(mask):
        return False
    grown, low = _grown(mask), _lowest_row(mask)
    return not any(bool((grown & other).any()) and _lowest_row(other) >= low for other in others)


def _pieces(mask: Tensor, min_area: int) -> list[list[Tensor]]:
    """Per frame of ``mask`` [T,H,W], its connected pieces of at least ``min_area`` pixels (each a [H,W] mask)."""
    if int(mask.sum()) < min_area:
        return [[] for _ in range(len(mask))]
    comp = connected_components(mask)
    out = []
    for f in range(len(mask)):
        ids, sizes = comp[f].unique(return_counts=True)
        out.append([comp[f] == i for i, n in zip(ids, sizes) if i > 0 and n >= min_area])
    return out


def _tracks(video: Tensor, labels: Tensor, v: Tensor) -> list[Track]:
    t, h, w = labels.shape
    min_area = max(3, int(MIN_AREA_FRACTION * h * w))
    tracks = []
    rows = torch.arange(h, dtype=video.dtype)
    cols = torch.arange(w, dtype=video.dtype)
    pieces = {ci: _pieces(labels == ci, min_area) for ci in range(len(COLOR_NAMES))}
    for ci, name in enumerate(COLOR_NAMES):
        parts = pieces[ci]
        if sum(1 for p in parts if p) < max(1, t // 3):
            continue
        # Identical objects are apart at the start (the camera may bring them together later).
        early = Counter(len(p) for p in parts[:5] if p).most_common()
        count = max(c for c, n in early if n == early[0][1]) if early else 1
        nan = float("nan")
        area, height, width = (torch.full((t,), nan) for _ in range(3))
        centroid, bottom = torch.full((t, 2), nan), torch.full((t, 2), nan)
        clean = torch.zeros(t, dtype=torch.bool)
        touching: list[set[str]] = [set() for _ in range(t)]
        votes: Counter = Counter()
        for f in range(t):
            if not parts[f]:
                continue
            # What may hide part of it: the other colours' pieces (specks below min_area are noise, not objects).
            others = [m for cj, other_parts in pieces.items() if cj != ci for m in other_parts[f]]
            for m in parts[f]:
                rr, cc = rows[m.any(1)], cols[m.any(0)]
                r0, r1, c0, c1 = int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1
                crop = m[r0:r1, c0:c1]
                vote = _shape_vote(v[f, r0:r1, c0:c1], crop)
                if vote is not None and _seen_whole(m, others) and not is_primitive_silhouette(crop, vote):
                    vote = BLOB
                if vote is not None:
                    votes[vote] += 1
            # A single object may be split by an occluder: take all its pieces; a group is represented by its largest.
            if count == 1:
                m = torch.stack(parts[f]).any(0)
            else:
                m = max(parts[f], key=lambda x: int(x.sum()))
            a = m.sum()
            area[f] = float(a)
            rr, cc = rows[m.any(1)], cols[m.any(0)]
            centroid[f, 0] = float((m.float().sum(0) * (cols + 0.5)).sum() / a)
            centroid[f, 1] = float((m.float().sum(1) * (rows + 0.5)).sum() / a)
            low = int(rr.max())
            lowest = m[max(0, low - 1) : low + 1]
            bottom[f, 0] = float((lowest.float().sum(0) * (cols + 0.5)).sum() / lowest.sum())
            bottom[f, 1] = low + 1.0
            height[f] = float(rr.max() - rr.min() + 1)
            width[f] = float(cc.max() - cc.min() + 1)
            clean[f] = not _touches_border(m)
            touching[f] = {COLOR_NAMES[int(i)] for i in labels[f][_grown(m)].unique() if 0 <= int(i) != ci}
        tracks.append(Track(name, count, area, centroid, bottom, height, width, clean, touching, votes))
    # Touching a nearer object (standing lower in the image) means being partly hidden by it.
    by_color = {tr.color: tr for tr in tracks}
    for tr in tracks:
        for f in range(t):
            if any(c in by_color and by_color[c].bottom[f, 1] > tr.bottom[f, 1] for c in tr.touching[f]):
                tr.clean[f] = False
    return tracks


def _nanmedian(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.median()) if len(x) else float("nan")


def _first_valid(x: Tensor, frames: int = 3) -> Tensor:
    """Mean over the first ``frames`` frames where ``x`` [T,...] is finite."""
    ok = ~torch.isnan(x.reshape(len(x), -1)).any(-1)
    return x[ok][:frames].mean(0)


def _camera_class(flows: Tensor, horizon: Tensor, height: int, width: int) -> tuple[str, dict[str, float]]:
    """Classify the camera move from the floor flow summed over the video at a near and a far floor point (bottom
    centre, just below the horizon) and at two near side points, in image widths.

    A pan shifts near and far floor alike; an orbit turns about the scene centre, so the near floor moves against
    the far floor; a dolly moves the floor vertically and spreads (in) or gathers (out) the near side points.
    """
    hz = float(horizon.mean())
    near_y = 0.88 * height
    far_y = min(height - 1.0, hz + 0.18 * (height - hz))
    pts = torch.tensor(
        [[width / 2, near_y], [width / 2, far_y], [0.2 * width, near_y], [0.8 * width, near_y]], dtype=flows.dtype
    )
    total = sum(flow_at(p, pts, height, width) for p in flows) / width
    feats = {
        "u_near": float(total[0, 0]),
        "u_far": float(total[1, 0]),
        "v_near": float(total[0, 1]),
        "expand": float(total[3, 0] - total[2, 0]),
    }
    sideways = max(abs(feats["u_near"]), abs(feats["u_far"]))
    dolly = 0.5 * (abs(feats["v_near"]) + abs(feats["expand"]))
    feats["sideways"], feats["dolly"] = sideways, dolly
    if max(sideways, dolly) < STATIC_FLOW:
        return "static", feats
    if dolly > sideways:
        return ("dolly_in" if feats["v_near"] + feats["expand"] > 0 else "dolly_out"), feats
    u_near, u_far = feats["u_near"], feats["u_far"]
    ratio = u_far / u_near if abs(u_near) > 1e-6 else 1.0
    if ratio > PAN_RATIO:
        return ("pan_right" if u_near < 0 else "pan_left"), feats
    return ("orbit_left" if u_near > 0 else "orbit_right"), feats


STATIC_FLOW = 0.06  # summed floor flow (image widths) below which the camera is static
PAN_RATIO = 0.55  # far/near floor shift: about 1 for a pan, negative or small for an orbit


def _base_points(track: Track, horizon: Tensor, focal: float) -> tuple[Tensor, Tensor]:
    """Image points [T,2] of each object's base centre and its floor distance [T] in camera heights.

    The lowest silhouette row is the base's near edge; the base centre lies about half the object's width further,
    which makes the point nearly fixed on the floor for a static object under any camera move.
    """
    below = (track.bottom[:, 1] - horizon).clamp_min(1.0)
    half = 0.5 * track.width
    distance = (focal + half) / below
    v_center = horizon + focal / distance
    return torch.stack([track.centroid[:, 0], v_center], -1), distance


def _object_motion(track: Track, flows: Tensor, horizon: Tensor, height: int, width: int, focal: float) -> str | None:
    """Motion of the base centre in frame-0 floor coordinates (units of camera height): a straight-line fit over the
    frames where the object is seen whole; None when those frames do not cover both ends of the video."""
    t = len(track.area)
    frames = [f for f in range(t) if track.clean[f]]
    if len(frames) < max(3, t // 3) or frames[0] > t // 3 or frames[-1] < t - 1 - t // 3:
        return None
    points, _ = _base_points(track, horizon, focal)
    index = torch.tensor(frames)
    back = map_to_frame0(points[index], index, flows, height, width)
    below = (back[:, 1] - float(horizon[0])).clamp_min(1.0)
    time = torch.tensor(frames, dtype=back.dtype)
    time = time - time.mean()
    span = (t - 1) / float((time**2).sum())

    def displacement(x: Tensor) -> float:
        return float((time * (x - x.mean())).sum()) * span

    d_lat = displacement((back[:, 0] - width / 2) / below)
    d_depth = displacement(focal / below)
    if max(abs(d_lat), abs(d_depth)) < MOVING_DISTANCE:
        return "none"
    if abs(d_lat) >= abs(d_depth):
        return "right" if d_lat > 0 else "left"
    return "away" if d_depth > 0 else "toward"


MOVING_DISTANCE = 0.35  # camera heights; toy objects travel 1.2-1.6 world units, about 0.6-0.95 camera heights


def _size_class(track: Track, horizon: Tensor) -> str | None:
    """Apparent height over the bottom's distance below the horizon ~ object height / camera height (toy objects:
    small 0.4-0.6, large 0.78-1.0), from frames where the object is seen whole when there are any."""
    below = track.bottom[:, 1] - horizon
    ratios = track.height / below.clamp_min(1.0)
    ratio = _nanmedian(ratios[track.clean] if track.clean.any() else ratios)
    if math.isnan(ratio):
        return None
    return "large" if ratio > SIZE_RATIO_THRESHOLD else "small"


SIZE_RATIO_THRESHOLD = 0.68


def _is_checkered(gray: Tensor, floor: Tensor) -> bool:
    """A grey floor covers a good part of the frames and has two tones (tile brightnesses differ by >= 0.2)."""
    if float(floor.float().mean()) < 0.2:
        return False
    return float(gray[floor].std()) > 0.05


def _start_distance(track: Track, distance: Tensor) -> float:
    """Floor distance [camera heights] early in the video, preferring frames where the object is seen whole."""
    early = len(distance) // 3
    if track.clean[:early].any():
        distance = torch.where(track.clean, distance, torch.full_like(distance, float("nan")))
    return float(_first_valid(distance))


def _shape_share(track: Track) -> float:
    """Share of the frames' shape votes that go to the winning shape (1.0 without votes)."""
    total = sum(track.shape_votes.values())
    return track.shape_votes.most_common(1)[0][1] / total if total else 1.0


def analyze(video: Tensor) -> VideoFacts:
    """Measure the facts of ``video`` [T,3,H,W] in [0,1] (a render or a generated video)."""
    if not isinstance(video, Tensor) or video.dim() != 4 or video.shape[1] != 3 or video.shape[0] < 2:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise InputError(f"oracle: video must be a [T,3,H,W] tensor with T >= 2, got {shape}")
    video = video.detach().float().clamp(0, 1).cpu()
    t, _, h, w = video.shape
    hue, sat, val = rgb_to_hsv(video)
    labels = color_labels(hue, sat, val)
    objects = labels >= 0
    grown = F.max_pool2d(objects.float()[:, None], 5, stride=1, padding=2)[:, 0] > 0
    sky, floor = sky_and_floor(hue, sat, val, grown)
    horizon = horizon_rows(sky, floor)
    gray = video.mean(1)
    both = (floor[:-1] & floor[1:]).float()  # floor in both frames: no object moving in or out of these pixels
    flows = torch.stack([fit_planar_flow(gray[i], gray[i + 1], both[i]) for i in range(t - 1)])
    camera, feats = _camera_class(flows, horizon, h, w)
    focal = 0.5 * h / math.tan(math.radians(CameraPath().fov_deg) / 2)
    setting = "checkered floor" if _is_checkered(gray, floor) else None
    # Camera motion is read off the floor's texture: without a checkered floor in view there is nothing to measure
    # (a uniform video would otherwise pass for a static camera).
    facts = VideoFacts(camera=camera if setting else None, horizon=horizon, flows=flows, camera_features=feats)
    facts.setting = setting
    for track in _tracks(video, labels, val):
        facts.tracks.append(track)
        shape = track.shape_votes.most_common(1)[0][0] if track.shape_votes else None
        shape = None if shape == BLOB else shape
        _, distance = _base_points(track, horizon, focal)
        seen = ~torch.isnan(track.area)
        # Present throughout: seen at both ends and in most frames (brief occlusions are not disappearances).
        present = bool(seen[:2].all() and seen[-2:].all() and seen.float().mean() >= 0.8)
        facts.objects.append(
            ObjectFacts(
                color=track.color,
                shape=shape,
                size=_size_class(track, horizon),
                count=track.count,
                motion=_object_motion(track, flows, horizon, h, w, focal) if track.count == 1 else "none",
                x=float(_first_valid(track.centroid)[0]),
                depth=_start_distance(track, distance),
                present=present,
                stable=present and _shape_share(track) >= 0.5,
            )
        )
    return facts


def score(video: Tensor, questions: Iterable[Any]) -> dict[str, Any]:
    """Oracle correctness per question and the alignment score of ``video`` [T,3,H,W] against ``questions``.

    Returns {"scores": {id: 0 or 1}, "answers": {id: answer}, "mean": float or None, "alignment": {...}}: ``scores``
    and ``mean`` cover every question the oracle can measure (see ``facts.SUPPORTED_TEMPLATES``); ``alignment`` is
    :func:`alignment` (the figure to report: blank, noisy and unrelated videos score near 0 on it).
    """
    questions = list(questions)
    facts = analyze(video)
    answers, scores = answer_and_score(facts, questions)
    mean = sum(scores.values()) / len(scores) if scores else None
    return {"scores": scores, "answers": answers, "mean": mean, "alignment": alignment(facts, questions)}


# Alignment aspects by question template: what the prompt says about its objects and the camera.
ALIGNMENT_ASPECTS = {
    "align.object": "object",
    "align.color": "color",
    "align.count": "count",
    "align.size": "size",
    "align.spatial": "spatial",
    "align.motion": "object_motion",
    "align.camera": "camera_motion",
}


def _is_positive_object(q: Any) -> bool:
    return template_name(q) == "align.object" and str(q.expected).strip().lower() == "yes"


def alignment(facts: Facts, questions: Iterable[Any]) -> dict[str, Any]:
    """How well a video shows what its prompt says, from the alignment questions only.

    Every alignment question counts (object, colour, count, size, spatial, object motion, camera motion), and it
    counts as wrong when the oracle cannot answer it, e.g. because it cannot find the object asked about. Questions
    that a video without the prompt's objects would pass (a distractor "is there a purple sphere?" → no, a count or
    relation that an unrelated scene happens to match) count as right only when the oracle finds at least one of the
    prompt's objects (a positive object question answered "yes"). Camera questions need a floor to measure motion
    against. So a blank, noisy or unrelated video scores near 0, and a render of the prompt near 1.

    Returns {"scores": {id: 0 or 1}, "by_aspect": {aspect: mean}, "aspect_of": {id: aspect}, "mean": float or None}.
    """
    chosen = [q for q in questions if template_name(q) in ALIGNMENT_ASPECTS]
    found = any(correct(answer(facts, q), q) for q in chosen if _is_positive_object(q))
    scores: dict[str, int] = {}
    by_aspect: dict[str, list[int]] = {}
    for q in chosen:
        ok = bool(correct(answer(facts, q), q))
        aspect = ALIGNMENT_ASPECTS[template_name(q)]
        if aspect != "camera_motion" and not _is_positive_object(q):
            ok = ok and found
        scores[q.id] = int(ok)
        by_aspect.setdefault(aspect, []).append(int(ok))
    return {
        "scores": scores,
        "by_aspect": {a: sum(v) / len(v) for a, v in sorted(by_aspect.items())},
        "aspect_of": {q.id: ALIGNMENT_ASPECTS[template_name(q)] for q in chosen},
        "mean": sum(scores.values()) / len(scores) if scores else None,
    }

