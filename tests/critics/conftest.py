"""Tiny critics saved once per session, and a question set covering the three question kinds."""

from __future__ import annotations

import pytest

from prompts.schema import Question, QuestionSet

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "llava")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    from critics.tiny import build_tiny_critic

    root = tmp_path_factory.mktemp("critics")
    return {family: build_tiny_critic(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def questions() -> list[QuestionSet]:
    """Two videos with different question counts (4 and 2), so padding and masks are exercised."""
    full = [
        Question("red_cube", "alignment", "binary", "Is there a red cube?", "yes"),
        Question("colour", "alignment", "choice", "What colour is the cube?", "red", options=["red", "blue", "green"]),
        Question(
            "caption",
            "quality",
            "dense",
            "Describe the video.",
            "a red cube on the floor",
            token_weights={"red": 2.0, "cube": 2.0, "the": 0.1},
        ),
        Question("falling", "physics", "binary", "Is the cube falling?", "no"),
    ]
    return [QuestionSet("a red cube on the floor", full), QuestionSet("a blue ball", full[:2])]


@pytest.fixture
def make_critic(tiny_dirs):
    """make_critic(family, **CriticConfig fields) -> a critic loaded from the saved tiny model."""
    from critics.config import CriticConfig
    from critics.registry import load_critic

    def make(family: str, **overrides):
        return load_critic(CriticConfig(family=family, path=str(tiny_dirs[family]), **overrides))

    return make
