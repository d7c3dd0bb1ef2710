"""The reward-hacking monitor fires when the critic rises while the judge falls beyond its noise, and only then."""

from __future__ import annotations

import math

import pytest

from trainers.evaluation import by_judge_aspect
from trainers.monitor import hacking_alarms


def _records(critic: list[float], judge: list[float], aspect: str = "color") -> list[dict]:
    return [
        {"video": f"{i}_v.gif", "oracle": {"critic_by_aspect": {aspect: c}, "alignment_by_aspect": {aspect: j}}}
        for i, (c, j) in enumerate(zip(critic, judge))
    ]


def test_fires_when_the_critic_rises_while_the_judge_falls_beyond_its_standard_error():
    before = _records([-1.0, -1.2, -0.9, -1.1], [1.0, 1.0, 1.0, 0.5])
    after = _records([-0.5, -0.6, -0.4, -0.7], [0.0, 0.5, 0.0, 0.0])
    alarms = hacking_alarms(before, after, 10, 20)
    assert [a.aspect for a in alarms] == ["color"]
    alarm = alarms[0]
    assert alarm.critic_change > 0 and alarm.judge_change == -0.75 and alarm.videos == 4
    message = alarm.message()
    assert "'color'" in message and "steps 10 -> 20" in message and "\n" not in message


def _changes(mean: float, se: float) -> list[float]:
    """Four paired changes with this mean and standard error: mean +- d alternating has sample standard deviation
    d*sqrt(4/3), so a standard error of that over sqrt(4), i.e. d/sqrt(3)."""
    d = se * math.sqrt(3)
    return [mean + d, mean - d, mean + d, mean - d]


def _evaluations(critic_changes: list[float], judge_changes: list[float]) -> tuple[list[dict], list[dict]]:
    n = len(critic_changes)
    before = _records([-1.0] * n, [0.5] * n)
    after = _records([-1.0 + c for c in critic_changes], [0.5 + j for j in judge_changes])
    return before, after


@pytest.mark.parametrize(
    ("critic_rise", "judge_fall", "fires"),
    [
        (0.101, 0.201, True),  # critic rise just over its 1 SE (0.1), judge fall just over 2 SE (0.2)
        (0.099, 0.5, False),  # critic rise just under its own SE: noise, even with the judge far down
        (0.5, 0.199, False),  # judge fall just under 2 SE: noise, even with the critic far up
        (0.101, 0.15, False),  # judge fall over 1 SE but under 2 SE (the old rule fired here)
    ],
)
def test_fires_only_when_the_critic_rise_exceeds_its_se_and_the_judge_fall_exceeds_two_se(
    critic_rise: float, judge_fall: float, fires: bool
):
    before, after = _evaluations(_changes(critic_rise, 0.1), _changes(-judge_fall, 0.1))
    alarms = hacking_alarms(before, after, 0, 10)
    assert bool(alarms) is fires
    if fires:
        alarm = alarms[0]
        assert alarm.critic_se == pytest.approx(0.1) and alarm.judge_se == pytest.approx(0.1)
        assert alarm.critic_change == pytest.approx(critic_rise) and alarm.judge_change == pytest.approx(-judge_fall)
        assert "standard error 0.100" in alarm.message()


def test_quiet_when_critic_and_judge_rise_together():
    before = _records([-1.0, -1.2, -0.9], [0.0, 0.5, 0.0])
    after = _records([-0.5, -0.6, -0.4], [1.0, 1.0, 0.5])
    assert hacking_alarms(before, after, 0, 10) == []


def test_quiet_when_the_judge_falls_within_its_noise():
    """A judge change of mean -0.1 with a standard error of 0.5 is noise, not a fall."""
    before = _records([-1.0, -1.0, -1.0, -1.0], [0.5, 0.5, 0.5, 0.5])
    after = _records([-0.5, -0.5, -0.5, -0.5], [1.5, -0.5, 1.1, -0.5])
    assert hacking_alarms(before, after, 0, 10) == []


def test_quiet_when_the_critic_falls_too():
    before = _records([-0.5, -0.5], [1.0, 1.0])
    after = _records([-1.0, -1.0], [0.0, 0.0])
    assert hacking_alarms(before, after, 0, 10) == []


def test_videos_pair_by_name_and_unpaired_or_unjudged_videos_are_skipped():
    before = _records([-1.0, -1.0], [1.0, 1.0])
    after = _records([-0.5], [0.0]) + [{"video": "9_new.gif", "oracle": None}]
    assert [a.videos for a in hacking_alarms(before, after, 0, 5)] == [1]


def test_critic_rewards_are_grouped_by_the_judges_aspects():
    rewards = {"align.color.red_cube": -0.2, "align.object.red_cube": -1.0, "align.object.cube": -3.0, "qual.x": -9.0}
    aspect_of = {"align.color.red_cube": "color", "align.object.red_cube": "object", "align.object.cube": "object"}
    assert by_judge_aspect(rewards, aspect_of) == {"color": -0.2, "object": -2.0}
