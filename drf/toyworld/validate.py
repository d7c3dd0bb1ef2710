"""How well the oracle agrees with ground truth: accuracy per question template and per measured fact.

The oracle is only worth trusting on generated videos if it is near-perfect on renders, where the truth is known.
Question sets come from the caller (this module does not depend on the prompts package).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor

from drf.toyworld.facts import Facts, answer, template_name
from drf.toyworld.oracle import analyze
from drf.toyworld.scene import Scene
from drf.toyworld.truth import scene_facts, truth


def _measured(video_or_facts: Tensor | Facts) -> Facts:
    return video_or_facts if isinstance(video_or_facts, Facts) else analyze(video_or_facts)


def question_accuracy(items: Iterable[tuple[Scene, Tensor | Facts, Iterable[Any]]]) -> dict[str, tuple[int, int]]:
    """{template: (agreements, answered)} of the oracle against ground truth over (scene, video [T,3,H,W] or its
    analysed facts, questions) items; questions the oracle or the truth leaves unanswered are not counted."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for scene, video, questions in items:
        facts = _measured(video)
        for q in questions:
            expected, given = truth(scene, q), answer(facts, q)
            if expected is None or given is None:
                continue
            entry = tally[template_name(q)]
            entry[0] += int(given == expected)
            entry[1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(tally.items())}


def fact_accuracy(scenes: Sequence[Scene], videos: Sequence[Tensor | Facts]) -> dict[str, tuple[int, int]]:
    """{fact: (agreements, total)} for the camera move (overall and per true move, "camera:pan_left"...) and, per
    object group found by colour, presence, shape, size, count and motion (singletons, where the oracle answers;
    "motion_answered" counts how often it does). Takes videos or analysed facts."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def add(name: str, ok: bool) -> None:
        tally[name][0] += int(ok)
        tally[name][1] += 1

    for scene, video in zip(scenes, videos):
        measured, true = _measured(video), scene_facts(scene)
        add("camera", measured.camera == true.camera)
        add(f"camera:{true.camera}", measured.camera == true.camera)
        by_color = {o.color: o for o in measured.objects}
        add("no_extra_objects", set(by_color) <= {o.color for o in true.objects})
        for o in true.objects:
            found = by_color.get(o.color)
            add("found", found is not None)
            if found is None:
                continue
            add("shape", found.shape == o.shape)
            add("size", found.size == o.size)
            add("count", found.count == o.count)
            if o.count == 1:
                add("motion_answered", found.motion is not None)
                if found.motion is not None:
                    add("motion", found.motion == o.motion)
    return {k: (v[0], v[1]) for k, v in sorted(tally.items())}
