"""The toy critic's words phase: replies read off scene truth say what the scene shows (the claims read back from them
hold on the scene's own facts, a changed word does not), a tiny critic taught them on one scene says them, and an
interrupted words phase resumes to the same weights."""

from __future__ import annotations

import random

import pytest
import torch

from drf.cli import main
from drf.toyworld.facts import template_name
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_COLORS, WORLD_FRAMES, sample_scenes
from drf.toyworld.train.critic_words import claims, confirmed, replies
from drf.toyworld.truth import scene_facts
from prompts.schema import QuestionSet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_explanations_from_truth_hold_on_the_truth_and_a_changed_colour_does_not():
    rng = random.Random(0)
    checked = refuted = 0
    for scene in sample_scenes(60, seed=11):
        facts = scene_facts(scene)
        for reply in replies(scene, scene, "clean", rng, per_video=99):
            if reply.mode != "explain" or template_name(reply.question) == "align.caption":
                continue
            assert reply.text.startswith(f"{reply.question.expected}: ") and reply.text.endswith("."), reply.text
            assert confirmed(facts, reply.question, reply.text) in (True, None), reply.text
            checked += 1
            colour = next((c for c in WORLD_COLORS if f" {c} " in reply.text), None)
            if colour is not None:
                other = WORLD_COLORS[(WORLD_COLORS.index(colour) + 1) % len(WORLD_COLORS)]
                wrong = reply.text.replace(f" {colour} ", f" {other} ")
                # the other colour may be in the scene too, with the same shape: then the sentence still holds
                refuted += confirmed(facts, reply.question, wrong) is False
    assert checked > 300 and refuted > 100, (checked, refuted)


def test_claims_read_the_answer_counts_colours_and_absent_shapes():
    said = claims("no: there are two large yellow cubes and no sphere.")
    assert said.answer == "no" and said.present == [(2, "yellow", "cube")] and said.absent == ["sphere"]
    assert claims("red: the sphere is red.").present == [(None, "red", "sphere")]
    assert claims("ararararrr").present == [] and claims("").answer == ""


def _scene_with_a_colour_question():
    for scene in sample_scenes(40, seed=3):
        if len(scene.objects) == 1:
            return scene
    raise AssertionError("no single-object scene among 40")


def test_a_tiny_critic_taught_one_scene_says_its_answers_in_words():
    """Memorisation: a few dozen words-phase steps on one render make greedy decoding say the truth's dense answers
    and explanations through ``explain`` (the path ``drf score --explain`` takes); wrong labels or gradients do not."""
    from critics.tiny import build_tiny_model
    from drf.toyworld.train.critic import Example, make_critic, words_loss

    scene = _scene_with_a_colour_question()
    out = render(scene, WORLD_FRAMES, 64, 64, 1)
    frames = out.rgb
    example = Example(frames, scene, "clean", list(range(frames.shape[0])), out.masks, scene)
    model, tokenizer = build_tiny_model("qwen2_vl", seed=0)
    critic = make_critic(model, tokenizer)
    taught = replies(scene, scene, "clean", random.Random(0), per_video=2)
    language = [p for n, p in model.named_parameters() if not n.startswith("model.visual.")]
    for p in language:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(language, lr=1e-2)
    torch.manual_seed(0)
    for _ in range(150):
        loss = words_loss(critic, [example], per_video=2, rng=random.Random(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.requires_grad_(False)
    assert loss.item() < 0.05, loss.item()
    explained = [r for r in taught if r.mode == "explain"]
    assert explained
    generated = critic.explain(frames[None], [QuestionSet("toy", [r.question for r in explained])])
    assert generated[0] == [r.text for r in explained]
    colour = next(r for r in taught if template_name(r.question) == "align.color" and r.mode == "score")
    assert colour.text == scene.objects[0].color
    (said,) = critic.reply_logprobs(frames[None], [[colour.question]], [[colour.text]], [["score"]])
    logprobs, targets = said[0]
    assert (logprobs.argmax(-1) == targets).all()  # greedy decoding says the colour, then ends the turn


@pytest.mark.parametrize("phase", ["answer", "words"])
def test_an_interrupted_phase_resumes_to_the_same_weights(tmp_path, monkeypatch, phase):
    """One phase only, from a saved critic (init_from, the other phase 0 steps): killed during its third step, rerun
    with the same command, it ends bit for bit where an uninterrupted run of three steps ends (optimiser, schedule,
    video stream and the questions drawn per step all resume)."""
    from safetensors.torch import load_file

    import drf.toyworld.train.critic as critic_script

    class Killed(Exception):
        pass

    start = tmp_path / "start"
    model, tokenizer = critic_script.build_critic_model(seed=5)
    model.save_pretrained(start)
    tokenizer.save_pretrained(start)
    command = ["toyworld", "train", "critic", "--device", "cpu", "--threads", "1", "--set", f"init_from={start}",
               "--set", f"answer_steps={3 if phase == 'answer' else 0}",
               "--set", f"words_steps={3 if phase == 'words' else 0}", "--set", "t2v_eval=0", "--set", "vae_share=0.0",
               "--set", "videos_per_step=1", "--set", "questions_per_video=2", "--set", "checkpoint_minutes=0"]  # fmt: skip
    monkeypatch.setattr(critic_script, "evaluate_critic", lambda *args, **kwargs: {"gates": {}})
    assert main([*command, "--out", str(tmp_path / "a")]) == 0
    loss, calls = getattr(critic_script, f"{phase}_loss"), []

    def killed_at_the_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return loss(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(critic_script, f"{phase}_loss", killed_at_the_third_step)
        with pytest.raises(Killed):
            main([*command, "--out", str(tmp_path / "b")])
    assert (tmp_path / "b" / ".train" / f"critic-{phase}.pt").is_file()
    assert main([*command, "--out", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "b" / ".train" / f"critic-{phase}.pt").exists()
    weights = [load_file(tmp_path / run / "critic" / "model.safetensors") for run in "ab"]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)
    start_weights = load_file(start / "model.safetensors")
    assert any(not torch.equal(start_weights[k], weights[0][k]) for k in start_weights), "no weight changed"
