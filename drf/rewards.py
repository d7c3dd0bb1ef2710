"""Per-question rewards and how they become one scalar per video.

Every reward — a critic's answer to a question, or a black-box score such as an aesthetic model — is a column of a
``RewardOutput``: a ``[B,Q]`` table with a question id, an aspect and a weight per entry. Videos in a batch have
different questions, so entries are padded and ``mask`` says which exist.

Aggregation (DESIGN §2): within each aspect, the weighted mean ``Σ_q w_q r_q / Σ_q w_q`` over the questions a
video has; then the weighted mean of those aspect rewards with aspect weights ``a``, over the aspects the video has.
An aspect a video lacks is left out of its mean rather than counted as zero, so a prompt with no physics questions
is not punished for it. ``d total / d r_q = (w_q / Σ_{q' in aspect} w_q') · (a_aspect / Σ_{present aspects} a)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from drf.errors import InputError, QuestionError


@dataclass
class RewardOutput:
    """Per-question rewards of a batch of videos.

    per_question: [B,Q] float, may require grad; entries where ``mask`` is False are padding and may hold anything.
    mask: [B,Q] bool, True where video b has question q.
    question_ids, aspects: B lists naming column q of row b; a list may be shorter than Q when the rest is padding.
    weights: [B,Q] float >= 0, the question weights used within an aspect.
    extras: anything else a reward wants to hand on (answer probabilities, token log-probs), not aggregated.
    """

    per_question: torch.Tensor
    mask: torch.Tensor
    question_ids: list[list[str]]
    aspects: list[list[str]]
    weights: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.per_question.dim() != 2:
            raise ValueError(f"per_question must be [B,Q], got shape {tuple(self.per_question.shape)}")
        shape = self.per_question.shape
        if self.mask.shape != shape or self.weights.shape != shape:
            raise ValueError(
                f"per_question {tuple(shape)}, mask {tuple(self.mask.shape)} and weights "
                f"{tuple(self.weights.shape)} must have the same shape"
            )
        if self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool, got {self.mask.dtype}")
        if len(self.question_ids) != shape[0] or len(self.aspects) != shape[0]:
            raise ValueError(f"question_ids and aspects need one list per video ({shape[0]})")
        for b, (ids, aspects) in enumerate(zip(self.question_ids, self.aspects)):
            if len(ids) != len(aspects) or len(ids) > shape[1]:
                raise ValueError(f"video {b}: {len(ids)} ids and {len(aspects)} aspects for {shape[1]} columns")
            if self.mask[b, len(ids) :].any():
                raise ValueError(f"video {b}: mask is set on columns past its {len(ids)} named questions")

    @property
    def batch_size(self) -> int:
        return self.per_question.shape[0]

    @property
    def num_columns(self) -> int:
        return self.per_question.shape[1]

    def present(self) -> list[list[tuple[int, str, str]]]:
        """Per video, ``(column, question_id, aspect)`` of each question it has."""
        mask = self.mask.tolist()
        return [
            [(q, qid, aspect) for q, (qid, aspect) in enumerate(zip(ids, aspects)) if mask[b][q]]
            for b, (ids, aspects) in enumerate(zip(self.question_ids, self.aspects))
        ]

    @classmethod
    def from_critic(cls, critic_output: Any, question_sets: Sequence[Any]) -> RewardOutput:
        """Wrap a critic's output (``rewards``, ``mask``, ``weights``, ``question_ids``, ``p_expected`` [B,Q]) with the
        aspects of the question sets it answered (``question_sets[b].questions[i].id/.aspect``), matched by id."""
        aspects = []
        for b, (ids, qset) in enumerate(zip(critic_output.question_ids, question_sets)):
            by_id = {q.id: q.aspect for q in qset.questions}
            missing = [qid for qid in ids if qid not in by_id]
            if missing:
                raise QuestionError(f"prompt {b}: critic answered question '{missing[0]}' that its question set lacks")
            aspects.append([by_id[qid] for qid in ids])
        return cls(
            per_question=critic_output.rewards,
            mask=critic_output.mask,
            question_ids=[list(ids) for ids in critic_output.question_ids],
            aspects=aspects,
            weights=critic_output.weights,
            extras={"p_expected": critic_output.p_expected},
        )

    @classmethod
    def from_rows(
        cls,
        rewards: Sequence[Sequence[torch.Tensor]],
        question_ids: Sequence[Sequence[str]],
        aspects: Sequence[Sequence[str]],
        weights: Sequence[Sequence[float]],
        extras: dict[str, Any] | None = None,
    ) -> RewardOutput:
        """Pad ragged per-video lists of scalar rewards (with grad) into a ``RewardOutput``."""
        width = max((len(row) for row in rewards), default=0)
        rows, masks, weight_rows = [], [], []
        for row, row_weights in zip(rewards, weights):
            values = [r.reshape(()) for r in row]
            pad = width - len(values)
            ref = values[0] if values else torch.zeros(())
            rows.append(torch.stack(values + [ref.new_zeros(())] * pad) if width else ref.new_zeros((0,)))
            masks.append([True] * len(values) + [False] * pad)
            weight_rows.append(list(row_weights) + [0.0] * pad)
        per_question = torch.stack(rows) if rows else torch.zeros(0, 0)
        return cls(
            per_question=per_question,
            mask=torch.tensor(masks, dtype=torch.bool, device=per_question.device).reshape(per_question.shape),
            question_ids=[list(ids) for ids in question_ids],
            aspects=[list(a) for a in aspects],
            weights=torch.tensor(weight_rows, dtype=torch.float32, device=per_question.device).reshape(
                per_question.shape
            ),
            extras=dict(extras or {}),
        )


def _padded(names: list[str], width: int) -> list[str]:
    return names + [""] * (width - len(names))


def combine(outputs: Sequence[RewardOutput]) -> RewardOutput:
    """Concatenate rewards for the same batch along Q (e.g. critic questions + black-box rewards)."""
    if not outputs:
        raise ValueError("combine needs at least one RewardOutput")
    batch = outputs[0].batch_size
    if any(o.batch_size != batch for o in outputs):
        raise ValueError(f"combine: batch sizes differ: {[o.batch_size for o in outputs]}")
    extras: dict[str, Any] = {}
    for out in outputs:
        clash = extras.keys() & out.extras.keys()
        if clash:
            raise ValueError(f"combine: two outputs carry extras named {sorted(clash)}")
        extras.update(out.extras)
    combined = RewardOutput(
        per_question=torch.cat([o.per_question for o in outputs], dim=1),
        mask=torch.cat([o.mask for o in outputs], dim=1),
        question_ids=[sum((_padded(o.question_ids[b], o.num_columns) for o in outputs), []) for b in range(batch)],
        aspects=[sum((_padded(o.aspects[b], o.num_columns) for o in outputs), []) for b in range(batch)],
        weights=torch.cat([o.weights.to(outputs[0].weights.dtype) for o in outputs], dim=1),
        extras=extras,
    )
    for b, entries in enumerate(combined.present()):
        seen: set[str] = set()
        for _, qid, _ in entries:
            if qid in seen:
                raise QuestionError(f"prompt {b}: question id '{qid}' appears twice among the combined rewards")
            seen.add(qid)
    return combined


def aggregate(
    output: RewardOutput, aspect_weights: dict[str, float] | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total reward per video ``[B]`` (differentiable) and the reward of each aspect ``{aspect: [B]}``.

    ``per_aspect[a][b]`` is NaN where video b has no question of aspect a (for logging; the total never reads it).
    Aspects missing from ``aspect_weights`` weigh 1; weight 0 keeps an aspect out of the total but still logged.
    Within an aspect, questions of weight 0 are logged but do not count; an aspect whose present questions all
    weigh 0 counts as absent.
    """
    aspect_weights = aspect_weights or {}
    present = output.present()
    weights = output.weights.to(torch.float32)
    bad = output.mask & ~(torch.isfinite(weights) & (weights >= 0))
    if bad.any():
        b, q = (int(i) for i in bad.nonzero()[0])
        raise QuestionError(
            f"prompt {b}, question '{output.question_ids[b][q]}' ({output.aspects[b][q]}): weight "
            f"{weights[b, q].item()}; question weights must be finite and >= 0"
        )
    for aspect, a in aspect_weights.items():
        if a < 0:
            raise InputError(f"aspect weight for '{aspect}' is {a}; aspect weights must be >= 0")

    # Padding may hold NaN; select rather than multiply so it cannot leak into values or gradients.
    rewards = torch.where(output.mask, output.per_question.to(torch.float32), 0.0)
    weights = torch.where(output.mask, weights, 0.0).to(rewards.device)
    names = sorted({aspect for entries in present for _, _, aspect in entries})
    device = rewards.device
    numerator = torch.zeros(output.batch_size, device=device)
    denominator = torch.zeros(output.batch_size, device=device)
    per_aspect: dict[str, torch.Tensor] = {}
    for aspect in names:
        member = torch.tensor(
            [[c < len(row) and row[c] == aspect for c in range(output.num_columns)] for row in output.aspects],
            dtype=torch.bool,
            device=device,
        ).reshape(rewards.shape)
        w = torch.where(member, weights, 0.0)
        w_sum = w.sum(dim=1)
        has = w_sum > 0
        # Dividing by a safe 1 where the aspect is absent keeps the backward free of 0/0.
        mean = (w * rewards).sum(dim=1) / torch.where(has, w_sum, 1.0)
        per_aspect[aspect] = torch.where(has, mean, float("nan"))
        a = float(aspect_weights.get(aspect, 1.0))
        numerator = numerator + a * torch.where(has, mean, 0.0)
        denominator = denominator + a * has.to(torch.float32)
    empty = (denominator <= 0).nonzero()
    if len(empty):
        b = int(empty[0])
        raise QuestionError(
            f"prompt {b}: no question with positive weight in an aspect with positive weight "
            f"(questions: {[qid for _, qid, _ in present[b]] or 'none'}); give at least one a positive weight"
        )
    return numerator / denominator, per_aspect


def _scalar(t: torch.Tensor) -> float:
    return float(t.detach().to(torch.float32).mean().item())


def reward_metrics(
    output: RewardOutput, per_aspect: dict[str, torch.Tensor], total: torch.Tensor, prefix: str = "reward"
) -> dict[str, float]:
    """Flat metrics: ``<prefix>/total``, ``<prefix>/aspect/<aspect>``, ``<prefix>/q/<question_id>``.

    Aspect and question values are means over the videos of the batch that have them.
    """
    metrics = {f"{prefix}/total": _scalar(total)}
    for aspect, values in sorted(per_aspect.items()):
        values = values.detach()
        metrics[f"{prefix}/aspect/{aspect}"] = _scalar(values[~torch.isnan(values)])
    rewards = output.per_question.detach().to(torch.float32).cpu()
    by_question: dict[str, list[float]] = {}
    for b, entries in enumerate(output.present()):
        for q, qid, _ in entries:
            by_question.setdefault(qid, []).append(float(rewards[b, q]))
    for qid in sorted(by_question):
        values = by_question[qid]
        metrics[f"{prefix}/q/{qid}"] = sum(values) / len(values)
    return metrics


@runtime_checkable
class Reward(Protocol):
    """Anything that scores a batch of videos: ``reward(inputs, prompts, **context) -> RewardOutput``.

    ``reads`` says what ``inputs`` is: ``"frames"``, the decoded frames [B,T,3,H,W] in [0,1], or ``"latents"``, the
    final latents of the chain — a trainer decodes only when some reward reads frames. ``differentiable`` says that
    gradients of the output reach ``inputs``; only such rewards may train DRF, which backpropagates through them.
    Context a trainer passes: ``question_sets`` (one per video).
    """

    name: str
    reads: str
    differentiable: bool

    def __call__(self, inputs: torch.Tensor, prompts: Sequence[str], **context: Any) -> RewardOutput: ...


@dataclass
class NamedReward:
    """A scalar-per-video function wrapped as a one-question ``Reward`` (TRL-style reward function with a weight).

    ``fn(inputs, prompts, **context) -> [B]``. Its column has question id ``name`` and aspect ``aspect`` (default: its
    own name, so its weight against other aspects is ``aspect_weights[name]``); ``weight`` is its question weight
    within that aspect, which matters when several rewards share one aspect.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    weight: float = 1.0
    aspect: str | None = None
    reads: str = "frames"
    differentiable: bool = False

    def __call__(self, inputs: torch.Tensor, prompts: Sequence[str], **context: Any) -> RewardOutput:
        values = torch.as_tensor(self.fn(inputs, prompts, **context))
        if values.shape != (len(prompts),):
            raise InputError(
                f"reward '{self.name}' returned shape {tuple(values.shape)}, expected ({len(prompts)},): one value "
                "per video"
            )
        batch = len(prompts)
        return RewardOutput(
            per_question=values.reshape(batch, 1),
            mask=torch.ones(batch, 1, dtype=torch.bool, device=values.device),
            question_ids=[[self.name] for _ in range(batch)],
            aspects=[[self.aspect or self.name] for _ in range(batch)],
            weights=torch.full((batch, 1), float(self.weight), device=values.device),
        )


@dataclass
class BuildContext:
    """What a run hands a built-in reward's builder: its loaded ``critic`` (None when no reward lists it) and the
    critic's random views (``critic.augment``, None for none), the ``device``, ``camera_of(prompt)`` (the camera move
    a prompt names) and a ``cache`` the builders of one run share (e.g. one geometry model for all geometry.*
    rewards)."""

    critic: Any
    device: Any
    camera_of: Callable[[str], str | None]
    cache: dict[Any, Any] = field(default_factory=dict)
    critic_augment: Any = None


@dataclass(frozen=True)
class BuiltInReward:
    """A reward a run names in ``rewards:`` without code of its own: what it reads (``frames`` | ``latents``), whether
    gradients pass it and ``build(entry, context, where) -> Reward`` (``where``: the entry's config key, e.g.
    ``rewards[1]``, for errors). ``needs_critic``: the run loads its ``critic:``
    section for it; ``model``: what the entry's ``model:`` must name, for a reward that reads one ("" for none)."""

    reads: str
    differentiable: bool
    build: Callable[[Any, BuildContext, str], Reward]
    needs_critic: bool = False
    model: str = ""
    help: str = ""


# name -> BuiltInReward; filled by the modules that define them (critics.reward, drf.geometry.latent_rewards), so a
# new built-in reward is one register_reward call beside its code.
REWARDS: dict[str, BuiltInReward] = {}


def register_reward(name: str, reward: BuiltInReward) -> None:
    """Make ``{name: <name>}`` a valid ``rewards:`` entry built by ``reward.build``."""
    REWARDS[name] = reward
