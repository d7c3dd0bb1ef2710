"""The reward-hacking monitor fires when the critic rises while the judge falls beyond its noise, and only then."""

from __future__ import annotations

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
