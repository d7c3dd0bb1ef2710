"""Two evaluations of one run compared prompt by prompt.

Every evaluation samples the same prompts from the same noise, so the videos of two evaluations pair up by file name
and a change is measured per prompt (the mean over its videos when there are several seeds), with the standard error
over prompts. That is how the before/after summary and the reward-hacking monitor read a run's ``scores.json`` files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from critics.reward import CRITIC
from drf.stats import mean_and_se

Record = dict[str, Any]


def paired(before: Sequence[Record], after: Sequence[Record]) -> list[tuple[Record, Record]]:
    """(earlier record, later record) of the videos present in both evaluations."""
    earlier = {r.get("video"): r for r in before}
    return [(earlier[r["video"]], r) for r in after if r.get("video") in earlier]


@dataclass(frozen=True)
class Change:
    """One quantity before and after, averaged per prompt; ``se`` is the standard error of the paired change."""

    name: str
    before: float
    after: float
    change: float
    se: float
    prompts: int

    def cells(self) -> tuple[str, ...]:
        """name, before, after, change, its standard error, the change in standard errors (blank for changes below
        print precision) and the prompts paired: a row of the before/after table."""
        sigmas = f"{self.change / self.se:+.1f}" if self.se >= 5e-5 else ""
        numbers = (self.before, self.after, self.change)
        return (self.name, *(f"{x:+.4f}" for x in numbers), f"{self.se:.4f}", sigmas, str(self.prompts))


def change(name: str, pairs: Sequence[tuple[Record, Record]], read: Callable[[Record], float | None]) -> Change | None:
    """The change of ``read(record)`` (None: not measured on that video) between the paired evaluations."""
    by_prompt: dict[str, list[tuple[float, float]]] = {}
    for then, now in pairs:
        a, b = read(then), read(now)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            by_prompt.setdefault(now.get("prompt", now["video"]), []).append((a, b))
    if not by_prompt:
        return None
    befores = [sum(a for a, _ in v) / len(v) for v in by_prompt.values()]
    afters = [sum(b for _, b in v) / len(v) for v in by_prompt.values()]
    delta, se = mean_and_se([b - a for a, b in zip(befores, afters)])
    return Change(name, sum(befores) / len(befores), sum(afters) / len(afters), delta, se, len(by_prompt))


def _at(*keys: str) -> Callable[[Record], float | None]:
    def read(record: Record) -> float | None:
        value: Any = record
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return read


def _gap(aspect: str | None) -> Callable[[Record], float | None]:
    """The critic's mean p(expected) minus the judge's score, over one judge aspect's questions (None: all)."""

    def read(record: Record) -> float | None:
        oracle = record.get("oracle") or {}
        if aspect is None:
            p, judged = oracle.get("critic_p"), oracle.get("alignment")
        else:
            p, judged = (
                oracle.get("critic_p_by_aspect", {}).get(aspect),
                oracle.get("alignment_by_aspect", {}).get(aspect),
            )
        return None if p is None or judged is None else p - judged

    return read


def total_label(names: list[str]) -> str:
    """How tables and reports name a run's total reward, from its ``rewards:`` names in order: ``critic reward
    total`` when the critic alone is the reward, the one reward's own name (``red``), else ``reward total (a + b)``."""
    if names == [CRITIC]:
        return "critic reward total"
    if len(names) == 1:
        return names[0]
    return f"reward total ({' + '.join(names)})"


def reward_label(name: str) -> str:
    """A row or caption for one entry of ``rewards:``: ``critic reward`` for the critic, else its own name."""
    return "critic reward" if name == CRITIC else name


def reward_names(records: Sequence[Record]) -> list[str]:
    """The run's rewards, in the order of its ``rewards:`` list, as its records name them (``by_reward``)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.get("by_reward") or {}))
    return list(names)


def summary(before: Sequence[Record], after: Sequence[Record]) -> list[Change]:
    """The total reward, named by the run's rewards (``critic reward total``, ``red``, ``reward total (critic +
    geometry.smoothness)``), each reward when there are several, the critic's per-aspect rewards, then with a judge
    its plain mean and alignment score, the critic's reward over the judge's aspects and the critic-judge gap (total
    and per judge aspect)."""
    pairs = paired(before, after)
    names = reward_names([now for _, now in pairs]) or [CRITIC]  # records written before by_reward: the critic's
    found = [change(total_label(names), pairs, _at("reward"))]
    if len(names) > 1:
        found += [change(reward_label(name), pairs, _at("by_reward", name)) for name in names]
    critic_aspects = sorted({a for _, now in pairs for a in now.get("aspects", {})})
    found += [change(f"critic reward {a}", pairs, _at("aspects", a)) for a in critic_aspects]
    judged = [(then, now) for then, now in pairs if then.get("oracle") and now.get("oracle")]
    if judged:
        aspects = sorted({a for _, now in judged for a in now["oracle"].get("alignment_by_aspect", {})})
        found.append(change("oracle total (plain mean)", judged, _at("oracle", "total")))
        found.append(change("oracle alignment score total", judged, _at("oracle", "alignment")))
        found += [
            change(f"oracle alignment score {a}", judged, _at("oracle", "alignment_by_aspect", a)) for a in aspects
        ]
        found += [change(f"critic reward on oracle {a}", judged, _at("oracle", "critic_by_aspect", a)) for a in aspects]
        found.append(change("critic-oracle gap total", judged, _gap(None)))
        found += [change(f"critic-oracle gap {a}", judged, _gap(a)) for a in aspects]
    return [c for c in found if c is not None]
