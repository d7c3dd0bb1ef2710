"""The toy critic's gates, measured on scenes no training used.

- **accuracy** per question family on held-out renders (balanced truth-labelled questions of the own prompt and of
  minimally changed scenes);
- **paired AUC** per family: the same question asked about two renders that differ in one attribute, one where the
  answer is true and one where it is false; the share of pairs in which the true video gets the higher probability;
- **grey video**: p(yes) of every "is there a ..." question on a uniform grey video;
- **agreement with the oracle** per family on samples of the toy T2V model (held-out prompts): the one place the
  oracle's labels are used, as an independent judge;
- **words** (after a words phase) on held-out renders: per dense question family, the share said exactly (greedy
  decoding gives the truth and ends); and the share of generated explanations (``explain``, greedy) of the prompt's
  alignment questions whose claims the oracle confirms (``critic_words.confirmed``), beside the same share for the
  truth's own sentences (the ceiling the oracle's errors leave).

A question counts as answered right when the critic gives its label p > 0.5.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch

from drf.stats import mean_and_se
from drf.toyworld.assets import load_toy_generator
from drf.toyworld.facts import answer, template_name
from drf.toyworld.grammar import prompt_for
from drf.toyworld.oracle import analyze
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_FRAMES, sample_scene
from drf.toyworld.train.critic_data import (
    balanced,
    family,
    labelled,
    minimally_changed,
    question_prompts,
    questions_of,
    render_questions,
)
from drf.toyworld.train.critic_words import EXPLAINED, confirmed, reply_text
from drf.toyworld.train.data import clips
from drf.toyworld.train.t2v import sample_videos
from drf.toyworld.truth import scene_facts, truth
from prompts.schema import QuestionSet

ALIGNMENT_FAMILIES = (
    "align.object", "align.count", "align.size", "align.spatial", "align.motion", "align.camera", "align.camera.choice",
)  # fmt: skip
T2V_STEPS, T2V_GUIDANCE = 12, 4.0  # the demo's sampling settings
EVAL_SEED_BASE = 90_000_000


@torch.no_grad()
def p_label(critic, frames: torch.Tensor, questions: Sequence) -> list[float]:
    """p(label) of each question (``expected`` holds the label) for one video [T,3,H,W] as the critic sees it."""
    if not questions:
        return []
    out = critic.score(frames[None], [QuestionSet(prompt="toy", questions=list(questions))])
    return [float(out.p_expected[0, i]) for i in range(len(questions))]


def _rates(pairs: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
    by: dict[str, list[float]] = {}
    for name, value in pairs:
        by.setdefault(name, []).append(value)
    out = {}
    for name, values in sorted(by.items()):
        mean, se = mean_and_se(values)
        out[name] = {"mean": round(mean, 4), "se": round(se, 4), "n": len(values)}
    return out


def _eval_scene(index: int, seed: int):
    return sample_scene(EVAL_SEED_BASE + seed * 1_000_003 + index, "eval")


def accuracy_on_renders(critic, count: int, seed: int) -> tuple[dict, dict]:
    """(accuracy per family, paired AUC per family) on ``count`` held-out renders and their one-change twins."""
    rng = random.Random(seed)
    right: list[tuple[str, float]] = []
    paired: list[tuple[str, float]] = []
    for i in range(count):
        scene = _eval_scene(i, seed)
        video = render(scene, WORLD_FRAMES, 64, 64, 1).rgb
        questions = balanced(render_questions(scene, question_prompts(scene, rng)), rng)
        right += [(family(q), float(p > 0.5)) for q, p in zip(questions, p_label(critic, video, questions))]
        twin = next((s for s in (minimally_changed(scene, rng) for _ in range(5)) if s is not None), None)
        if twin is None:
            continue
        twin_video = render(twin, WORLD_FRAMES, 64, 64, 1).rgb
        asked = [q for q in questions_of(prompt_for(scene)) if q.kind != "dense"]
        both = [(q, truth(scene, q), truth(twin, q)) for q in asked]
        both = [(q, a, b) for q, a, b in both if a is not None and b is not None and a != b]
        if not both:
            continue
        on_scene = labelled([q for q, _, _ in both], partial(truth, scene))
        p_true = p_label(critic, video, on_scene)
        p_false = p_label(critic, twin_video, on_scene)  # the same label (the scene's answer), asked about the twin
        paired += [(family(q), 1.0 if a > b else 0.5 if a == b else 0.0) for q, a, b in zip(on_scene, p_true, p_false)]
    return _rates(right), _rates(paired)


def grey_video_yes(critic, count: int, seed: int) -> dict:
    """p(yes) of the "is there a ..." questions of ``count`` held-out prompts on a uniform grey video."""
    grey = torch.full((WORLD_FRAMES, 3, 64, 64), 0.5)
    values = []
    for i in range(count):
        asked = [q for q in questions_of(prompt_for(_eval_scene(i, seed))) if template_name(q) == "align.object"]
        yes = labelled(asked, lambda q: "yes")
        values += p_label(critic, grey, yes)
    return {
        "max": round(max(values), 4),
        "mean": round(sum(values) / len(values), 4),
        "share_at_most_0.2": round(sum(v <= 0.2 for v in values) / len(values), 4),
        "n": len(values),
    }


def agreement_on_samples(critic, root: Path, count: int, seed: int) -> dict:
    """Agreement with the oracle per family on samples of the toy T2V model for ``count`` held-out prompts."""
    prompts = clips(count, seed, "eval").prompts
    videos = sample_videos(load_toy_generator(root), prompts, T2V_STEPS, T2V_GUIDANCE, seed)
    agree = []
    for video, prompt in zip(videos, prompts):
        facts = analyze(video)
        questions = labelled(
            [q for q in questions_of(prompt) if template_name(q).startswith("align.")], partial(answer, facts)
        )
        agree += [(family(q), float(p > 0.5)) for q, p in zip(questions, p_label(critic, video, questions))]
    return _rates(agree)


@torch.no_grad()
def words_on_renders(critic, count: int, seed: int) -> tuple[dict, dict, dict]:
    """(dense answers said exactly, explanations the oracle confirms, truth's sentences the oracle confirms), each
    per family, on ``count`` held-out renders asked their own prompt's questions (labelled by the truth); an
    explanation counts where the oracle checks a claim of the truth's sentence, and one stating nothing it can check
    counts as not confirmed."""
    exact: list[tuple[str, float]] = []
    said: list[tuple[str, float]] = []
    ceiling: list[tuple[str, float]] = []
    for i in range(count):
        scene = _eval_scene(i, seed)
        video = render(scene, WORLD_FRAMES, 64, 64, 1).rgb
        frames = video[None]
        questions = render_questions(scene, [prompt_for(scene)], dense=True)
        dense = [q for q in questions if q.kind == "dense"]
        if dense:
            (out,) = critic.reply_logprobs(
                frames, [dense], [[q.expected for q in dense]], [["score"] * len(dense)]
            )
            exact += [(template_name(q), float((lp.argmax(-1) == t).all())) for q, (lp, t) in zip(dense, out)]
        explained = [q for q in questions if template_name(q) in EXPLAINED]
        if not explained:
            continue
        texts = critic.explain(frames, [QuestionSet("toy", explained)])[0]
        facts, true_facts = analyze(video), scene_facts(scene)
        for q, text in zip(explained, texts):
            truths = confirmed(facts, q, reply_text(true_facts, q, "explain") or "")
            if truths is None:
                continue  # nothing the oracle checks is at stake in this question
            ceiling.append((template_name(q), float(truths)))
            said.append((template_name(q), float(confirmed(facts, q, text) is True)))  # no claim: not confirmed
    return _with_all(exact), _with_all(said), _with_all(ceiling)


def _with_all(pairs: list[tuple[str, float]]) -> dict:
    """``_rates`` per family plus "all" over every item."""
    return {**_rates(pairs), **_rates([("all", v) for _, v in pairs])} if pairs else {}


def evaluate_critic(critic, root: Path, renders: int, seed: int, t2v: int, words: int = 0) -> dict:
    accuracy, paired = accuracy_on_renders(critic, renders, seed)
    grey = grey_video_yes(critic, min(renders, 100), seed)
    agreement = agreement_on_samples(critic, root, t2v, seed + 1) if t2v > 0 else {}
    exact, said, ceiling = words_on_renders(critic, words, seed) if words > 0 else ({}, {}, {})
    def lowest(table: dict) -> float:
        return min((table[f]["mean"] for f in ALIGNMENT_FAMILIES if f in table), default=float("nan"))

    gates = {
        "accuracy_min": lowest(accuracy),
        "paired_auc_min": lowest(paired),
        "grey_max_p_yes": grey["max"],
        "agreement_min": lowest(agreement),
    }
    if words > 0:
        gates["dense_exact"] = exact.get("all", {}).get("mean", float("nan"))
        gates["explanations_confirmed"] = said.get("all", {}).get("mean", float("nan"))
    return {
        "gates": gates,
        "accuracy": accuracy,
        "paired_auc": paired,
        "grey_video": grey,
        "agreement_with_oracle_t2v": agreement,
        "words": {"renders": words, "dense_exact": exact, "explanations_confirmed": said,
                  "truth_sentences_confirmed": ceiling},  # fmt: skip
        "eval_renders": renders,
        "eval_seed": seed,
        "t2v_samples": t2v,
    }
