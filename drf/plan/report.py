"""The lines ``drf plan`` prints: what exists before the step, the peak of each phase, the peak's make-up, the verdict."""

from __future__ import annotations

from drf.plan.advice import Suggestion
from drf.plan.gpus import GIB, RESERVED
from drf.plan.step import StepPlan
from drf.plan.tracker import ACTIVATIONS

# The trainer's phase names, in the order a step runs them.
PHASE_ORDER = ("sampling", "decode", "rewards", "backward", "between phases")


def gib(n: int) -> str:
    return f"{n / GIB:6.2f} GiB"


def describe_plan(
    config: str, plan: StepPlan, gpu: str, total: int, budget: int, processes: int, fsdp: bool
) -> list[str]:
    how = f"FSDP2 over {processes} processes" if fsdp and processes > 1 else (
        f"{processes} processes, each with whole models" if processes > 1 else "one process")  # fmt: skip
    lines = [f"drf plan {config}: one {plan.recipe.upper()} optimiser step, {how}, per GPU"]
    lines.append("held before the step:")
    lines += [f"  {kind:28s} {gib(n)}" for kind, n in plan.static.items() if n]
    lines.append("peak while each phase runs (everything live then):")
    order = [p for p in PHASE_ORDER if p in plan.phases] + [p for p in plan.phases if p not in PHASE_ORDER]
    for name in order:
        phase = plan.phases[name]
        lines.append(f"  {name:28s} {gib(phase.bytes)}   activations {gib(phase.by_kind.get(ACTIVATIONS, 0))}")
    parts = ", ".join(f"{kind} {n / GIB:.2f}" for kind, n in plan.peak.by_kind.items() if n)
    lines.append(f"peak: {plan.peak.bytes / GIB:.2f} GiB, in {plan.peak_phase} ({parts})")
    lines += [f"note: {note}" for note in plan.notes]
    spare = budget - plan.peak.bytes
    verdict = "fits" if spare >= 0 else "does NOT fit"
    lines.append(
        f"{verdict} on {gpu}: {plan.peak.bytes / GIB:.2f} of {budget / GIB:.1f} GiB usable "
        f"({total / GIB:.1f} GiB less {RESERVED / GIB:.1f} for the CUDA context and allocator), "
        f"{'spare' if spare >= 0 else 'over by'} {abs(spare) / GIB:.2f} GiB  [planned in {plan.seconds:.0f} s]"
    )
    return lines


def describe_suggestion(suggestion: Suggestion, budget: int) -> str:
    plan, change = suggestion.plan, suggestion.change
    how = " ".join(f"--set {o}" for o in change.overrides) or f"--processes {change.processes} --fsdp"
    verdict = "fits" if plan.peak.bytes <= budget else "still over"
    return f"  {change.what:28s} {gib(plan.peak.bytes)}  {verdict:10s}  {how}"
