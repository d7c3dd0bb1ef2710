"""Ground-truth answers: the exact answer to every toy-world question, read off the scene that was rendered.

Facts come from the scene description (kinds, counts, motions, frame-0 camera coordinates for relations); the
questions that judge the rendering itself (sharpness, artifacts, plausibility, smoothness) have the answer an ideal
video gives, because a render is one — except smoothness, which a jittered camera makes unknowable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from drf.toyworld.facts import Facts, ObjectFacts, answer, template_name
from drf.toyworld.grammar import SETTING, prompt_for
from drf.toyworld.scene import DEPTH_GAP, Scene

# Answers of an ideal render to the generic (prompt-independent) questions, by question id.
IDEAL_RENDER = {
    "phys.plausibility": "yes",
    "phys.permanence": "yes",
    "phys.permanence.vanish": "no",
    "phys.interpenetration": "no",
    "phys.support": "no",
    "qual.sharpness": "yes",
    "qual.artifacts": "no",
    "qual.flicker": "no",
    "qual.rating": "excellent",
    "temp.consistency": "yes",
    "temp.morph": "no",
}


def scene_facts(scene: Scene) -> Facts:
    """Facts of the scene: one entry per group of identical objects, relations from frame-0 camera coordinates."""
    if not scene.objects:
        return Facts([], scene.camera.motion, SETTING.removeprefix("on a "), depth_gap=DEPTH_GAP)
    cam = scene.camera_coords()
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, o in enumerate(scene.objects):
        groups.setdefault((o.shape, o.color, o.size), []).append(i)
    objects = []
    for (shape, color, size), members in groups.items():
        x = float(sum(cam[i, 0] / cam[i, 2] for i in members) / len(members))
        depth = float(sum(cam[i, 2] for i in members) / len(members))
        motion = scene.objects[members[0]].motion
        objects.append(ObjectFacts(color, shape, size, len(members), motion, x, depth))
    return Facts(objects, scene.camera.motion, SETTING.removeprefix("on a "), depth_gap=DEPTH_GAP)


def truth(scene: Scene, question: Any) -> str | None:
    """The exact answer to ``question`` for ``scene``, or None when the scene does not determine it."""
    name = template_name(question)
    if question.id in IDEAL_RENDER:
        return IDEAL_RENDER[question.id]
    if name == "phys.interpenetration":
        return "no"  # the sampler keeps objects apart over the whole video
    if name == "temp.smoothness":
        return "yes" if scene.camera.jitter == 0 else None
    if name == "align.caption":
        return prompt_for(scene) if scene.objects else None  # the world's own sentence for what it shows
    return answer(_cached_facts(scene), question)


# Questions about one scene come in dozens (training asks them every step); its facts are computed once. Read-only.
_cached_facts = lru_cache(maxsize=256)(scene_facts)
