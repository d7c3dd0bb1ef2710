"""Window and frame policies pick exactly the documented steps and frames, reproducibly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from drf.errors import ConfigError
from drf.frames import frames_from_config, select_frames
from drf.grad_window import GradWindow, window_from_config


def test_last_k_is_the_final_k_steps() -> None:
    assert GradWindow.last_k(2, 5).steps == {3, 4}


def test_random_k_is_seeded_and_varies_across_rollouts() -> None:
    cfg = SimpleNamespace(kind="random_k", k=2, steps=[], seed=7, checkpointing=True, detach_input=False)
    first = [window_from_config(cfg, 10, i).steps for i in range(5)]
    again = [window_from_config(cfg, 10, i).steps for i in range(5)]
    assert first == again and len(set(first)) > 1 and all(len(s) == 2 for s in first)


def test_explicit_steps_accept_negative_indices_and_reject_out_of_range() -> None:
    assert GradWindow.explicit([0, -1], 4).steps == {0, 3}
    with pytest.raises(ConfigError, match="step 4 is outside 0..3"):
        GradWindow.explicit([4], 4)
    with pytest.raises(ConfigError, match="k=5 must be between 1 and num_steps=4"):
        GradWindow.last_k(5, 4)


@pytest.mark.parametrize(
    ("policy", "n", "expected"),
    [
        ("all", 1, None),
        ("first", 1, [0]),
        ("middle", 1, [8]),
        ("last", 1, [16]),
        ("first_middle_last", 1, [0, 8, 16]),
        ("every_n", 4, [0, 4, 8, 12, 16]),
    ],
)
def test_frame_policies(policy: str, n: int, expected) -> None:
    assert select_frames(policy, 17, n) == expected


def test_random_n_frames_are_seeded_sorted_and_distinct() -> None:
    cfg = SimpleNamespace(policy="random_n", n=3, seed=1)
    picks = frames_from_config(cfg, 17, 0)
    assert picks == frames_from_config(cfg, 17, 0) == sorted(set(picks)) and len(picks) == 3
    with pytest.raises(ConfigError, match="unknown frame policy 'odd'"):
        select_frames("odd", 17)
