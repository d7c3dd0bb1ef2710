"""What the toy critic learns from: scene truth only.

Two kinds of supervision, both read off the scene that was rendered (never off the pixel oracle, which stays an
independent judge):

- **cell targets** for the vision tower: for every vision token (a temporal pair of frames x a 16x16-pixel cell of
  the 64x64 frame) the kind (colour and shape) of the object covering most of the cell, its size, motion, how many
  objects share its description and its shape, whether it is the leftmost object, and the camera move. They make the
  tokens say what is where before the language model has to read them;
- **labelled questions** for answering: the questions of the clip's own prompt and of prompts of *minimally changed*
  scenes (one attribute differs: colour, shape, size, count, object motion or camera move), each answered by
  ``drf.toyworld.truth`` for the rendered scene, then balanced so that within every question template "yes" and "no"
  (or every option) are equally common — no answer can be guessed from the wording.

Degraded copies of a render (blur, noise, flicker, shuffled or reversed frames) keep their labels valid (or change them
in known ways), which gives the quality and temporal questions both answers too.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from functools import lru_cache

import torch

from drf.toyworld.facts import template_name
from drf.toyworld.grammar import prompt_for
from drf.toyworld.image import gaussian_blur
from drf.toyworld.scene import SIZES, WORLD_CAMERA_MOTIONS, WORLD_COLORS, WORLD_OBJECT_MOTIONS, WORLD_SHAPES, Scene
from drf.toyworld.truth import truth
from prompts.registry import decompose

CELL = 16  # pixels of a 64x64 frame per vision token (84 -> 112 px input, 14 px patches merged 2x2)
IGNORE = -100
REVERSED_MOTION = {"pan_left": "pan_right", "pan_right": "pan_left", "left": "right", "right": "left"}
CELL_HEADS = {  # name -> classes of the cell-target heads (see cell_targets)
    "kind": 1 + len(WORLD_COLORS) * len(WORLD_SHAPES),
    "size": len(SIZES),
    "motion": len(WORLD_OBJECT_MOTIONS),
    "group_count": 3,
    "shape_count": 3,
    "leftmost": 2,
    "camera": len(WORLD_CAMERA_MOTIONS),
}
# What ``minimally_changed`` may change; the two exchanges are listed twice, being the negatives that need binding.
CHANGES = ("color", "shape", "size", "count", "motion", "camera") + ("swap_colors", "swap_places") * 2
MIN_COVER = 0.08  # share of a cell an object must cover to be that cell's object


# ---------------------------------------------------------------------------------------------------------------
# Degradations


def reversed_scene(scene: Scene) -> Scene:
    """The scene whose truth describes the video played backwards (camera and object motions reversed)."""
    camera = dataclasses.replace(scene.camera, motion=REVERSED_MOTION.get(scene.camera.motion, scene.camera.motion))
    objects = tuple(dataclasses.replace(o, motion=REVERSED_MOTION.get(o.motion, o.motion)) for o in scene.objects)
    return dataclasses.replace(scene, objects=objects, camera=camera)


DEGRADATIONS = ("clean", "blur", "noise", "flicker", "shuffle", "reverse")
DEGRADATION_WEIGHTS = (0.5, 0.1, 0.1, 0.1, 0.1, 0.1)
# Per degradation: answers it sets, and question templates whose truth it breaks (dropped).
_OVERRIDES = {
    "blur": ({"qual.sharpness": "no"}, ("qual.rating",)),
    "noise": ({"qual.artifacts": "yes"}, ("qual.sharpness", "qual.rating")),
    "flicker": ({"qual.flicker": "yes"}, ("qual.rating", "temp.consistency")),
    "shuffle": (
        {"temp.consistency": "no", "temp.smoothness": "no"},
        ("align.motion", "align.camera", "phys.plausibility", "qual.flicker", "qual.rating"),
    ),
    "reverse": ({}, ("align.spatial",)),
    "clean": ({}, ()),
}
# A blank video (uniform grey) answers only "is there a ...": no (its camera, setting and quality are undefined).
BLANK = "blank"


def shown_scene(scene: Scene, kind: str) -> Scene:
    """The scene whose truth a render of ``scene`` degraded by ``kind`` shows (played backwards: the reversed one)."""
    return reversed_scene(scene) if kind == "reverse" else scene


def degrade(frames: torch.Tensor, kind: str, rng: random.Random) -> tuple[torch.Tensor, list[int]]:
    """frames [T,3,H,W] in [0,1] -> (the degraded copy, the source frame of each output frame)."""
    order = list(range(frames.shape[0]))
    if kind == "blur":
        return gaussian_blur(frames, rng.uniform(1.0, 2.0)), order
    if kind == "noise":
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        return (frames + rng.uniform(0.05, 0.25) * torch.randn(frames.shape, generator=gen)).clamp(0, 1), order
    if kind == "flicker":
        scales = torch.tensor([rng.uniform(0.6, 1.4) for _ in order]).view(-1, 1, 1, 1)
        return (frames * scales).clamp(0, 1), order
    if kind == "shuffle":
        while order == sorted(order):
            rng.shuffle(order)
        return frames[order], order
    if kind == "reverse":
        return frames.flip(0), order[::-1]
    return frames, order


# ---------------------------------------------------------------------------------------------------------------
# Labelled questions


@lru_cache(maxsize=8192)
def questions_of(prompt: str) -> tuple:
    """The prompt's questions from the rule decomposer (memoised: training asks about the same prompts often)."""
    return tuple(decompose(prompt))


def labelled(questions: Sequence, answer_of: Callable, dense: bool = False) -> list:
    """Copies of ``questions`` whose ``expected`` is the label (questions without a usable label are dropped, and
    dense ones unless ``dense``)."""
    out = []
    for q in questions:
        label = answer_of(q)
        if label is None or (q.kind == "dense" and not dense) or (q.kind == "choice" and label not in q.options):
            continue
        if q.kind == "binary" and label not in ("yes", "no"):
            continue
        out.append(dataclasses.replace(q, expected=label))
    return out


def minimally_changed(scene: Scene, rng: random.Random) -> Scene | None:
    """``scene`` with one thing changed, or None when the drawn change does not apply; its prompt asks questions
    whose answer differs from the original's in one way.

    The changes: one attribute (colour, shape, size, count, object motion or camera move), or two objects exchanging
    their colours or their places. A new colour is one the scene does not use, so "is there a green cube?" is
    answered by the colour alone; exchanged colours keep every colour and shape in the video and only their pairing
    changes ("a red cube and a blue sphere" asked "is there a blue cube?"), and exchanged places flip the left/right
    relations: the negatives that need binding and position rather than a word's presence."""
    objects = list(scene.objects)
    i = rng.randrange(len(objects))
    o = objects[i]
    change = rng.choice(CHANGES)
    if change in ("swap_colors", "swap_places"):
        pairs = [(a, b) for a in range(len(objects)) for b in range(a + 1, len(objects))
                 if objects[a].color != objects[b].color]  # fmt: skip
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        key = "color" if change == "swap_colors" else "position"
        objects[a], objects[b] = (
            dataclasses.replace(objects[a], **{key: getattr(objects[b], key)}),
            dataclasses.replace(objects[b], **{key: getattr(objects[a], key)}),
        )
        return dataclasses.replace(scene, objects=tuple(objects))
    if change == "camera":
        motion = rng.choice([m for m in WORLD_CAMERA_MOTIONS if m != scene.camera.motion])
        return dataclasses.replace(scene, camera=dataclasses.replace(scene.camera, motion=motion))
    if change == "color":
        used = {x.color for x in objects}
        free = [c for c in WORLD_COLORS if c not in used]
        objects = [dataclasses.replace(x, color=rng.choice(free)) if x.color == o.color else x for x in objects]
    elif change == "shape":
        other = next(s for s in WORLD_SHAPES if s != o.shape)
        objects = [dataclasses.replace(x, shape=other) if x.color == o.color else x for x in objects]
    elif change == "size":
        other = next(s for s in SIZES if s != o.size)
        objects = [dataclasses.replace(x, size=other) if x.color == o.color else x for x in objects]
    elif change == "count":
        twins = [x for x in objects if x.color == o.color]
        if len(twins) > 1:
            objects.remove(twins[-1])
        else:
            x, z = o.position
            objects.append(dataclasses.replace(o, position=(x + 1.2, z), motion="none", travel=(0.0, 0.0)))
    elif change == "motion":
        if o.motion == "none":
            if sum(x.color == o.color for x in objects) > 1 or any(x.motion != "none" for x in objects):
                return None
            objects[i] = dataclasses.replace(o, motion=rng.choice(WORLD_OBJECT_MOTIONS[1:]))
        else:
            objects[i] = dataclasses.replace(o, motion=rng.choice([m for m in WORLD_OBJECT_MOTIONS if m != o.motion]))
    return dataclasses.replace(scene, objects=tuple(objects))


def render_questions(scene: Scene, prompts: Sequence[str], kind: str = "clean", dense: bool = False) -> list:
    """Labelled questions of ``prompts`` (deduplicated by id) for a render of ``scene`` degraded by ``kind``; the
    dense ones too where ``dense``."""
    overrides, dropped = _OVERRIDES.get(kind, ({}, ()))
    target = shown_scene(scene, kind)

    def answer_of(q):
        if kind == BLANK and template_name(q) != "align.object":
            return None
        if q.id in overrides:
            return overrides[q.id]
        if template_name(q) in dropped or q.id in dropped:
            return None
        return truth(target, q)

    seen, out = set(), []
    for prompt in prompts:
        for q in labelled(questions_of(prompt), answer_of, dense):
            if q.id not in seen:
                seen.add(q.id)
                out.append(q)
    return out


def without_objects(scene: Scene) -> Scene:
    """The same floor, camera and motion with no object: every "is there a ..." is answered no."""
    return dataclasses.replace(scene, objects=())


def question_prompts(scene: Scene, rng: random.Random, changed: int = 3) -> list[str]:
    """The scene's own prompt and the prompts of up to ``changed`` minimally changed scenes."""
    prompts = [prompt_for(scene)]
    for _ in range(changed):
        other = minimally_changed(scene, rng)
        if other is not None:
            prompts.append(prompt_for(other))
    return prompts


def family(question) -> str:
    """The question's family for balancing and gates: its template, with camera yes/no and choice kept apart."""
    name = template_name(question)
    return f"{name}.choice" if question.kind == "choice" and name == "align.camera" else name


def balanced(questions: Sequence, rng: random.Random) -> list:
    """Within each family, as many questions of every answer as of the rarest one (families with one answer only
    are dropped: the wording would give them away)."""
    by: dict[str, dict[str, list]] = {}
    for q in questions:
        by.setdefault(family(q), {}).setdefault(q.expected, []).append(q)
    out = []
    for answers in by.values():
        # Choice questions keep a single observed answer: their other options are named in the question itself.
        if len(answers) < 2 and next(iter(answers.values()))[0].kind != "choice":
            continue
        least = min(len(v) for v in answers.values())
        for group in answers.values():
            out += rng.sample(group, least)
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Cell targets


def cell_targets(scene: Scene, masks: torch.Tensor, order: Sequence[int], kind: str) -> dict[str, torch.Tensor]:
    """Per-token targets [t, 4, 4] (``IGNORE`` where undefined) for a render of ``scene`` degraded by ``kind``.

    ``masks`` [T,n,64,64] are the renderer's per-object masks; ``order`` maps the frames the critic sees to source
    frames. A token covers two consecutive critic frames (Qwen pads an odd count by repeating the last).
    """
    shown = masks[list(order)].float()
    if shown.shape[0] % 2:
        shown = torch.cat([shown, shown[-1:]])
    t2, n = shown.shape[0] // 2, shown.shape[1]
    grid = shown.shape[-1] // CELL
    target = shown_scene(scene, kind)
    camera = WORLD_CAMERA_MOTIONS.index(target.camera.motion) if kind not in ("shuffle", BLANK) else IGNORE
    if n == 0:  # no object: every cell is empty, only the camera is known
        empty = torch.zeros(t2, grid, grid, dtype=torch.long)
        return {name: empty if name == "kind" else torch.full_like(empty, camera if name == "camera" else IGNORE)
                for name in CELL_HEADS}  # fmt: skip
    cover = shown.reshape(t2, 2, n, grid, CELL, grid, CELL).mean(dim=(1, 4, 6))  # [t, n, 4, 4]
    best, index = cover.max(dim=1)
    has = best >= MIN_COVER
    groups = [(o.shape, o.color, o.size) for o in target.objects]
    bearing = (lambda c: c[:, 0] / c[:, 2])(target.camera_coords())
    per_object = {
        "kind": [
            1 + WORLD_COLORS.index(o.color) * len(WORLD_SHAPES) + WORLD_SHAPES.index(o.shape) for o in target.objects
        ],
        "size": [list(SIZES).index(o.size) for o in target.objects],
        "motion": [WORLD_OBJECT_MOTIONS.index(o.motion) if kind != "shuffle" else IGNORE for o in target.objects],
        "group_count": [min(groups.count(g), 3) - 1 for g in groups],
        "shape_count": [min(sum(h[0] == g[0] for h in groups), 3) - 1 for g in groups],
        "leftmost": [
            int(bool(bearing[j] <= bearing.min())) if n > 1 and kind != "reverse" else IGNORE for j in range(n)
        ],
    }
    out = {}
    for name, values in per_object.items():
        values = torch.tensor(values)[index]
        empty = 0 if name == "kind" else IGNORE  # "no object here" is itself a kind
        out[name] = torch.where(has, values, torch.full_like(values, empty))
    out["camera"] = torch.full_like(index, camera)
    return out
