"""The toy critic's questions: the negatives of minimally changed scenes need binding and position, not a word."""

from __future__ import annotations

import random

from drf.toyworld.facts import template_name
from drf.toyworld.grammar import plan_prompt, prompt_for
from drf.toyworld.scene import sample_scene
from drf.toyworld.train.critic_data import minimally_changed, questions_of
from drf.toyworld.truth import truth


def _two_kinds():
    """A train scene of two single objects that differ in colour and in shape (a red cube and a blue sphere, say),
    whose prompt states their left/right relation."""
    for scene in (sample_scene(5_000_000 + i, "train") for i in range(200)):
        a, b = (scene.objects + (None, None))[:2]
        if len(scene.objects) == 2 and a.color != b.color and a.shape != b.shape and plan_prompt(scene).relations:
            return scene
    raise AssertionError("no two-object scene among 200")


def _changes(scene, draws: int = 200):
    rng = random.Random(0)
    return [other for other in (minimally_changed(scene, rng) for _ in range(draws)) if other is not None]


def test_exchanged_colours_keep_every_colour_and_shape_and_ask_about_the_pairing():
    scene = _two_kinds()
    kinds = {(o.color, o.shape) for o in scene.objects}
    colors, shapes = {o.color for o in scene.objects}, {o.shape for o in scene.objects}
    exchanged = [
        other
        for other in _changes(scene)
        if {o.color for o in other.objects} == colors
        and {o.shape for o in other.objects} == shapes
        and {(o.color, o.shape) for o in other.objects} != kinds
    ]
    assert exchanged, "no change exchanged the two objects' colours"
    new_kinds = {(o.color, o.shape) for o in exchanged[0].objects} - kinds
    asked = [
        q
        for q in questions_of(prompt_for(exchanged[0]))
        if template_name(q) == "align.object" and (q.slots.get("color"), q.slots.get("shape")) in new_kinds
    ]
    # Every colour and shape the question names is in the video; the answer is no because they are not paired so.
    assert asked and all(truth(scene, q) == "no" for q in asked), [q.text for q in asked]


def test_exchanged_places_state_the_opposite_relation_about_the_same_objects():
    scene = _two_kinds()
    kinds = sorted((o.color, o.shape) for o in scene.objects)
    moved = [
        other
        for other in _changes(scene)
        if sorted((o.color, o.shape) for o in other.objects) == kinds
        and [o.position for o in other.objects] != [o.position for o in scene.objects]
    ]
    assert moved, "no change exchanged the two objects' places"
    stated = [q for q in questions_of(prompt_for(moved[0])) if template_name(q) == "align.spatial"]
    stated = [q for q in stated if truth(moved[0], q) == "yes"]
    assert stated and all(truth(scene, q) == "no" for q in stated), [q.text for q in stated]
