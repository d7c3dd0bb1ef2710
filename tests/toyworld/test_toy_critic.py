"""The shipped toy critic looks at the video: a fast version of the blindness check.

On held-out renders (an eval seed no training used) the reward must move the right way when the video changes and
the question does not: a render's own object questions against a uniform grey video, against the same scene with
every object recoloured, and a camera question against the same scene with another camera move. (The full gates are
measured by ``drf.toyworld.train.critic_eval`` on 300 scenes and recorded in the manifest.)
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from drf.toyworld.facts import template_name
from drf.toyworld.grammar import prompt_for
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_COLORS, WORLD_FRAMES, sample_scenes
from prompts.registry import decompose
from prompts.schema import QuestionSet

SCENES = sample_scenes(4, seed=31, split="eval")


@pytest.fixture(scope="module")
def critic():
    from critics.config import CriticConfig
    from critics.registry import load_critic
    from drf.toyworld.assets import toy_critic_path, toy_critic_settings

    return load_critic(CriticConfig(path=str(toy_critic_path()), **toy_critic_settings()))


def p_yes(critic, frames: torch.Tensor, questions: list) -> torch.Tensor:
    """p(yes) per binary question for one video [T,3,H,W] (all its frames, as the critic is trained)."""
    yes = [dataclasses.replace(q, expected="yes") for q in questions]
    with torch.no_grad():
        out = critic.score(frames[None], [QuestionSet(prompt="toy", questions=yes)])
    return out.p_expected[0, : len(yes)]


def present_objects(scene) -> list:
    return [q for q in decompose(prompt_for(scene)) if template_name(q) == "align.object" and q.expected == "yes"]


def recoloured(scene):
    """Every object gets the next world colour (so no object keeps its own)."""
    shift = {c: WORLD_COLORS[(i + 1) % len(WORLD_COLORS)] for i, c in enumerate(WORLD_COLORS)}
    return dataclasses.replace(
        scene, objects=tuple(dataclasses.replace(o, color=shift[o.color]) for o in scene.objects)
    )


def test_object_questions_score_higher_on_the_render_than_on_a_grey_video(critic):
    grey = torch.full((WORLD_FRAMES, 3, 64, 64), 0.5)
    for scene in SCENES:
        questions = present_objects(scene)
        on_render, on_grey = p_yes(critic, render(scene).rgb, questions), p_yes(critic, grey, questions)
        assert on_render.mean() > on_grey.mean() + 0.2, (prompt_for(scene), on_render, on_grey)


@pytest.mark.xfail(
    strict=True,
    reason="the shipped critic does not bind colour to objects yet: recolouring every object moves p(yes) of the "
    "object questions by -0.00002 on these scenes (its object paired AUC is 0.52 in the manifest's critic gates)",
)
def test_recolouring_every_object_lowers_p_yes_of_the_object_questions(critic):
    drops = []
    for scene in SCENES:
        questions = present_objects(scene)
        before, after = (
            p_yes(critic, render(scene).rgb, questions),
            p_yes(critic, render(recoloured(scene)).rgb, questions),
        )
        drops += (before - after).tolist()
    drops = torch.tensor(drops)
    assert drops.mean() > 0.1 and (drops > 0).float().mean() >= 0.75, drops


def test_camera_question_follows_the_camera(critic):
    moves = {"pan_left": "pan_right", "pan_right": "pan_left", "static": "pan_left"}
    followed = []
    for scene in SCENES:
        question = next(
            q for q in decompose(prompt_for(scene)) if q.id.startswith("align.camera.") and q.expected == "yes"
        )
        other = dataclasses.replace(
            scene,
            camera=dataclasses.replace(
                scene.camera, motion=moves[scene.camera.motion], amount=scene.camera.amount or 20.0
            ),
        )
        true, false = p_yes(critic, render(scene).rgb, [question]), p_yes(critic, render(other).rgb, [question])
        followed.append(bool(true > false))
    assert sum(followed) >= 3, followed


def test_critic_training_into_a_folder_without_the_toy_generator_fails_before_training(tmp_path):
    """Its VAE round trips and T2V gate need the toy generator; finding out after an hour of training is too late."""
    from drf.errors import ModelLoadError
    from drf.toyworld.train.critic import CriticTrainConfig, train_critic

    with pytest.raises(ModelLoadError, match=r"the toy text-to-video model is missing .*generator/model_index.json"):
        train_critic(CriticTrainConfig(steps=1), tmp_path)
