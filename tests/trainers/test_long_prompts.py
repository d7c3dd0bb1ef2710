"""A prompt with very many questions cannot blow up the question count or the critic's memory: it is refused before the first step,
naming its file and line."""

from __future__ import annotations

import pytest

from drf.errors import QuestionError
from prompts import QuestionsConfig, decompose
from prompts.context import CAPTION_WORDS, PAIR_SUBJECTS
from tests.trainers.conftest import make_trainer, tiny_cfg

LONG = "a small red cube left of a blue sphere on a checkered floor, the camera pans right, " * 120  # 10,080 characters
# 64 distinct objects: 128 distinct questions (a repeated one is asked once, so LONG yields only 33)
MANY = ", ".join(f"a {size} {colour} {shape}" for size in ("small", "large")
                 for colour in ("red", "blue", "green", "yellow", "white", "black", "orange", "purple")
                 for shape in ("cube", "sphere", "cylinder", "cone"))
MANY += " on a checkered floor, the camera pans right"


def test_a_long_prompt_has_bounded_pair_and_caption_questions():
    qset = decompose(LONG, QuestionsConfig(max_questions=100_000))
    pairs = [q for q in qset.questions if q.id.startswith("phys.interpenetration.")]
    assert len(pairs) <= PAIR_SUBJECTS * (PAIR_SUBJECTS - 1) // 2
    (caption,) = [q for q in qset.questions if q.id == "align.caption"]
    assert len(caption.expected.split()) == CAPTION_WORDS


def test_a_long_prompt_in_the_prompts_file_stops_the_run_before_it_starts_naming_the_line(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\n# a comment\n" + MANY + "\na blue sphere\n")
    cfg = tiny_cfg(tmp_path / "runs", f"prompts={prompts}")
    with pytest.raises(QuestionError, match=rf"{prompts}:3: prompt .* yields \d+ questions, more than "
                                            r"questions.max_questions=64"):  # fmt: skip
        make_trainer(cfg)
    assert not (tmp_path / "runs" / cfg.name).exists(), "a start that fails leaves no half-made run directory"


def test_with_the_cap_raised_the_long_prompt_trains_with_bounded_critic_batches(tmp_path, monkeypatch):
    """Every forward of the critic sees at most critic.max_rows question rows, whatever the prompt's length."""
    from critics.vlm import HFVisionCritic

    prompts = tmp_path / "prompts.txt"
    prompts.write_text(MANY + "\n")
    seen = []
    row_logprobs = HFVisionCritic._row_logprobs

    def spy(self, rows, vision, features):
        seen.append(len(rows))
        return row_logprobs(self, rows, vision, features)

    monkeypatch.setattr(HFVisionCritic, "_row_logprobs", spy)
    cfg = tiny_cfg(tmp_path / "runs", f"prompts={prompts}", "questions.max_questions=100000", "critic.max_rows=16",
                   "drf.steps=1", "logging.sample_every=0", "drf.export=false")  # fmt: skip
    trainer = make_trainer(cfg)
    monkeypatch.setattr(trainer.critic.config, "max_rows", 16)  # the shared test critic takes the run's setting
    trainer.train()
    assert len(trainer.question_sets[MANY]) > 64 and seen and max(seen) <= 16
