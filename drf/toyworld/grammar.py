"""Scene -> prompt: the natural sentence a toy-world video is trained and evaluated with.

The wording stays inside the vocabulary the rule decomposer parses (shapes, colours, sizes, counts, object motions,
left/right relations, camera moves, "on a checkered floor"), so every prompt decomposes into questions
whose answers are known exactly. Everything the world varies is stated — shapes, colours, sizes, counts, which object
stands left of which, the motion and the camera move — so nothing visible is unprompted. Phrasing choices (the
determiner, the verb) are drawn from the scene's seed, so a scene always gets the same prompt.

    "a small red cube left of a blue sphere on a checkered floor, the red cube slides left, the camera pans right"
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from drf.toyworld.scene import Scene

_COUNT_WORDS = {2: "two", 3: "three"}
_RELATION_WORDS = {"left_of": "left of", "right_of": "right of", "in_front_of": "in front of", "behind": "behind"}
_DIRECTION_WORDS = {"left": "left", "right": "right", "toward": "toward the camera", "away": "away from the camera"}
_VERBS = {"sphere": ("rolls", "moves"), "cube": ("slides", "moves"), "cylinder": ("slides", "moves")}
CAMERA_PHRASES = {
    "static": "the camera is static",
    "pan_left": "the camera pans left",
    "pan_right": "the camera pans right",
    "dolly_in": "the camera dollies in",
    "dolly_out": "the camera dollies out",
    "orbit_left": "the camera orbits left",
    "orbit_right": "the camera orbits right",
}
SETTING = "on a checkered floor"


@dataclass(frozen=True)
class Group:
    """Identical objects named together ("two small red cubes"); ``objects`` index into ``Scene.objects``."""

    objects: tuple[int, ...]
    shape: str
    color: str
    size: str

    @property
    def count(self) -> int:
        return len(self.objects)


@dataclass(frozen=True)
class PromptPlan:
    """What the prompt states, in order: groups, relations between single objects (a, relation, b as object
    indices, all true at frame 0), the moving object's clause (index, direction, verb) and the camera move."""

    groups: tuple[Group, ...]
    relations: tuple[tuple[int, str, int], ...]
    motion: tuple[int, str, str] | None
    camera: str


def _true_relation(scene: Scene, a: int, b: int) -> str:
    """The horizontal relation of ``a`` to ``b`` at frame 0 (the sampled world states no depth relations: at 64x64
    "in front of" is a few pixels of height, below what the toy models resolve)."""
    return "left_of" if scene.relation(a, b, "left_of") else "right_of"


def plan_prompt(scene: Scene) -> PromptPlan:
    rng = random.Random(f"prompt-{scene.seed}")
    by_key: dict[tuple[str, str, str], list[int]] = {}
    for i, o in enumerate(scene.objects):
        by_key.setdefault((o.shape, o.color, o.size), []).append(i)
    groups = [Group(tuple(ix), *key) for key, ix in by_key.items()]
    rng.shuffle(groups)
    singles = [g.objects[0] for g in groups if g.count == 1]
    # Two single objects: which stands left is visible, so it is always stated.
    relations = [(a, _true_relation(scene, a, b), b) for a, b in zip(singles, singles[1:])]
    motion = None
    for i, o in enumerate(scene.objects):
        if o.motion != "none":
            motion = (i, o.motion, rng.choice(_VERBS[o.shape]))
    return PromptPlan(tuple(groups), tuple(relations), motion, scene.camera.motion)


def _noun_phrase(group: Group, rng: random.Random) -> str:
    det = _COUNT_WORDS.get(group.count) or ("one" if rng.random() < 0.1 else "a")
    noun = group.shape + ("s" if group.count > 1 else "")
    return f"{det} {group.size} {group.color} {noun}"


def _reference(scene: Scene, index: int) -> str:
    o = scene.objects[index]
    return f"the {o.color} {o.shape}"


def prompt_for(scene: Scene) -> str:
    """The scene's prompt (deterministic)."""
    plan = plan_prompt(scene)
    rng = random.Random(f"phrase-{scene.seed}")
    group_of = {i: g for g in plan.groups for i in g.objects}
    phrases = {id(g): _noun_phrase(g, rng) for g in plan.groups}
    parts: list[str] = []
    introduced: set[int] = set()
    for a, relation, b in plan.relations:
        right = _reference(scene, b) if b in introduced else phrases[id(group_of[b])]
        parts.append(f"{phrases[id(group_of[a])]} {_RELATION_WORDS[relation]} {right}")
        introduced.update((a, b))
    parts += [phrases[id(g)] for g in plan.groups if not introduced.intersection(g.objects)]
    objects = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    clauses = [f"{objects} {SETTING}"]
    if plan.motion is not None:
        index, direction, verb = plan.motion
        clauses.append(f"{_reference(scene, index)} {verb} {_DIRECTION_WORDS[direction]}")
    clauses.append(CAMERA_PHRASES[plan.camera])
    return ", ".join(clauses)
