"""Reward-hacking monitor: the critic's reward rising while the independent judge falls, aspect by aspect.

Two evaluations of a run sample the same prompts from the same noise, so their videos pair up by file name. For each
of the judge's aspects the monitor takes, per video, the change of the critic's mean reward over that aspect's
questions and the change of the judge's score, and raises an alarm when the critic's mean change is a rise larger than
its own standard error while the judge's mean change is a fall larger than twice its standard error (both over the
paired videos). A critic that the generator has learned to please without pleasing the judge shows exactly this
pattern; asking both changes to stand out of their noise keeps the monitor quiet between two evaluations of a nearly
unchanged model, where a judge whose verdict flips with small changes of the picture falls by one standard error often.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drf.stats import mean_and_se
from trainers.paired import paired

CRITIC_RISE_SE = 1.0  # the critic's rise must exceed this many of its standard errors
JUDGE_FALL_SE = 2.0  # and the judge's fall this many of its own


@dataclass(frozen=True)
class HackingAlarm:
    """One aspect whose critic reward rose while the judge fell between evaluations ``step_from`` and ``step_to``."""

    aspect: str
    step_from: int
    step_to: int
    critic_change: float
    critic_se: float
    judge_change: float
    judge_se: float
    videos: int

    def message(self) -> str:
        return (
            f"warning: possible reward hacking on '{self.aspect}', steps {self.step_from} -> {self.step_to}: critic "
            f"reward {self.critic_change:+.3f} (standard error {self.critic_se:.3f}) while the judge fell "
            f"{self.judge_change:+.3f} (standard error {self.judge_se:.3f}), {self.videos} videos"
        )


def hacking_alarms(
    before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]], step_from: int, step_to: int
) -> list[HackingAlarm]:
    """Alarms between two evaluations' ``scores.json`` records (each with ``video`` and an ``oracle`` entry holding
    ``alignment_by_aspect`` and ``critic_by_aspect``); aspects missing on either side of a pair are skipped."""
    pairs = [
        (then["oracle"], now["oracle"])
        for then, now in paired(before, after)
        if then.get("oracle") and now.get("oracle")
    ]
    aspects = sorted({a for _, now in pairs for a in now.get("alignment_by_aspect", {})})
    alarms = []
    for aspect in aspects:
        critic, judge = [], []
        for then, now in pairs:
            values = (then.get("critic_by_aspect", {}), now.get("critic_by_aspect", {}),
                      then.get("alignment_by_aspect", {}), now.get("alignment_by_aspect", {}))  # fmt: skip
            if all(aspect in v and v[aspect] is not None for v in values):
                critic.append(values[1][aspect] - values[0][aspect])
                judge.append(values[3][aspect] - values[2][aspect])
        if not critic:
            continue
        critic_change, critic_se = mean_and_se(critic)
        judge_change, judge_se = mean_and_se(judge)
        if critic_change > CRITIC_RISE_SE * critic_se and -judge_change > JUDGE_FALL_SE * judge_se:
            alarms.append(HackingAlarm(aspect, step_from, step_to, critic_change, critic_se, judge_change, judge_se,
                                       len(critic)))  # fmt: skip
    return alarms
