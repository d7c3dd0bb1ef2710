"""Reward-hacking monitor: the critic's reward rising while the independent judge falls, aspect by aspect.

Two evaluations of a run sample the same prompts from the same noise, so their videos pair up by file name. For each
of the judge's aspects the monitor takes, per video, the change of the critic's mean reward over that aspect's
questions and the change of the judge's score, and raises an alarm when the critic's mean change is positive while
the judge's mean change is negative by more than its standard error (over the paired videos). A critic that the
generator has learned to please without pleasing the judge shows exactly this pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drf.stats import mean_and_se
from trainers.paired import paired


@dataclass(frozen=True)
class HackingAlarm:
    """One aspect whose critic reward rose while the judge fell between evaluations ``step_from`` and ``step_to``."""

    aspect: str
    step_from: int
    step_to: int
    critic_change: float
    judge_change: float
    judge_se: float
    videos: int

    def message(self) -> str:
        return (
            f"warning: possible reward hacking on '{self.aspect}', steps {self.step_from} -> {self.step_to}: critic "
            f"reward {self.critic_change:+.3f} while the judge fell {self.judge_change:+.3f} (standard error "
            f"{self.judge_se:.3f}, {self.videos} videos)"
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
        critic_change, _ = mean_and_se(critic)
        judge_change, judge_se = mean_and_se(judge)
        if critic_change > 0 and judge_change < 0 and -judge_change > judge_se:
            alarms.append(HackingAlarm(aspect, step_from, step_to, critic_change, judge_change, judge_se, len(critic)))
    return alarms
