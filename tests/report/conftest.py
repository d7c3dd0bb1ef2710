"""Shared pieces of the report tests: the tiny critic, tiny-model videos and a run directory laid out like a trainer's.

Everything expensive (critic load ~3 s, tiny Wan sampling) is built once per session.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from critics.base import CriticOutput
from prompts.schema import Question, QuestionSet

PROMPTS = ["a red cube on a checkered floor", "a blue sphere rolling to the left"]


def small_question_set(prompt: str) -> QuestionSet:
    """One question of every kind, few enough that saliency and explanations stay fast."""
    return QuestionSet(
        prompt=prompt,
        questions=[
            Question(id="align.object", aspect="alignment", kind="binary", text="Is there a cube in the video?",
                     expected="yes"),
            Question(id="align.absent", aspect="alignment", kind="binary", text="Is there a cylinder in the video?",
                     expected="no", weight=0.5),
            Question(id="align.colour", aspect="alignment", kind="choice", text="What colour is it?",
                     expected="red", options=["red", "blue"]),
            Question(id="qual.sharp", aspect="quality", kind="binary", text="Is the video sharp?", expected="yes"),
            Question(id="align.caption", aspect="alignment", kind="dense", text="Describe the video.",
                     expected=prompt, weight=0.5),
        ],
        decomposer="manual",
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_critic():
    from critics.config import CriticConfig
    from critics.registry import load_critic

    return load_critic(CriticConfig(family="qwen2_vl", tiny=True, max_explain_tokens=6))


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> dict[int, list[Path]]:
    """Tiny-Wan GIFs (9 frames, 32x32) of PROMPTS for two 'steps' (different noise stands in for training).

    Uses the suite's shared tiny generator, so the components are built once for every test package.
    """
    from drf.grad_window import GradWindow
    from drf.sampling import sample
    from drf.video_io import write_video
    from tests.fixtures.wan import tiny_generator

    generator = tiny_generator()
    root = tmp_path_factory.mktemp("tiny_videos")
    videos: dict[int, list[Path]] = {}
    for step, seed in ((0, 0), (4, 1)):
        for index, prompt in enumerate(PROMPTS):
            rng = torch.Generator().manual_seed(100 * seed + index)
            with torch.no_grad():
                cond = generator.encode_prompts([prompt], 4.0)
                rollout = sample(generator, cond, GradWindow.none(2), rng=rng)
                frames = generator.decode(rollout.latents)[0]
            name = f"{index:03d}_{prompt.replace(' ', '_')}.gif"
            videos.setdefault(step, []).append(write_video(root / f"step-{step}" / name, frames.float()))
    return videos


def _metrics(steps: int) -> list[dict]:
    records = []
    for step in range(steps):
        record = {"step": step, "time": 1e9 + step, "reward/total": -1.0 + 0.1 * step}
        record["reward/aspect/alignment"] = -1.2 + 0.15 * step
        record["reward/aspect/quality"] = "nan" if step == 2 else -0.8 + 0.05 * step  # a logged NaN shows as a gap
        if step % 2 == 0:
            record["eval/reward/total"] = -1.1 + 0.1 * step
            record["eval/oracle/alignment/total"] = 0.25 + 0.1 * step
            record["eval/oracle/alignment/aspect/object"] = 0.5
        records.append(record)
    return records


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_videos) -> Path:
    """A run directory as the trainer writes it: config, questions, metrics, samples at steps 0 and 4 + scores."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    run.mkdir()
    config = {
        "name": "tiny",
        "prompts": "configs/prompts/tiny_eval.jsonl",
        "sampling": {"num_steps": 2, "frames": {"policy": "every_n", "n": 2, "seed": 0}},
        "critic": {"family": "qwen2_vl", "tiny": True, "max_explain_tokens": 6},
        "questions": {"decomposer": "rule", "aspects": ["alignment", "quality"]},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with (run / "questions.jsonl").open("w") as fh:
        for prompt in PROMPTS:
            fh.write(small_question_set(prompt).to_json() + "\n")
    with (run / "metrics.jsonl").open("w") as fh:
        for record in _metrics(5):
            fh.write(json.dumps(record) + "\n")
    for step, paths in tiny_videos.items():
        folder = run / "samples" / f"step-{step}"
        folder.mkdir(parents=True)
        records = []
        for path, prompt in zip(paths, PROMPTS):
            (folder / path.name).write_bytes(path.read_bytes())
            records.append({"video": path.name, "prompt": prompt, "reward": -1.0 + 0.05 * step,
                            "aspects": {"alignment": -1.0}, "questions": {"align.object": -0.7},
                            "oracle": {"total": 0.5, "alignment": 0.25 + 0.1 * step,
                                       "alignment_by_aspect": {"object": 0.5 + 0.05 * step},
                                       "critic_p_by_aspect": {"object": 0.4 + 0.1 * step}}})  # fmt: skip
        (folder / "scores.json").write_text(json.dumps(records, indent=2))
    return run


class RegionCritic:
    """A synthetic critic whose reward for each question reads one known region of the frames.

    ``regions[qid] = (channel, rows, cols)``: the reward is the mean of that channel over the region, so the true
    saliency of a question is exactly its region.
    """

    def __init__(self, regions: dict[str, tuple[int, slice, slice]]):
        self.regions = regions

    def score(self, frames: torch.Tensor, question_sets) -> CriticOutput:
        rows = []
        for b, qset in enumerate(question_sets):
            row = []
            for q in qset.questions:
                channel, ys, xs = self.regions[q.id]
                row.append(frames[b, :, channel, ys, xs].mean())
            rows.append(torch.stack(row))
        rewards = torch.stack(rows)
        ids = [qset.ids for qset in question_sets]
        shape = rewards.shape
        nan = torch.full(shape, float("nan"))
        return CriticOutput(
            rewards=rewards,
            p_expected=rewards.detach().clamp(0, 1),
            p_yes=nan,
            p_no=nan,
            weights=torch.tensor([[q.weight for q in s.questions] for s in question_sets]),
            mask=torch.ones(shape, dtype=torch.bool),
            question_ids=ids,
        )

    def explain(self, frames: torch.Tensor, question_sets) -> list[list[str]]:
        return [[f"<{q.id}> looks at its region & nothing else" for q in s.questions] for s in question_sets]
