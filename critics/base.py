"""The Critic protocol: frames in, one differentiable reward per question out.

Trainers only see ``score`` and ``explain``; which VLM answers, how frames are preprocessed and how the shared prefix is
reused stay behind this door. Question sets may differ in length per video, so per-question tensors are padded to
``[B, Qmax]`` with a boolean ``mask``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from prompts.schema import QuestionSet


@dataclass
class CriticOutput:
    """Per-question results for a batch of videos; tensors are ``[B, Qmax]``, padded where ``mask`` is False.

    ``rewards`` carries gradient to the frames (float32). ``p_expected`` is the probability the reward is built from:
    the renormalised yes/no probability for binary questions, the option probability for choice questions, and the
    per-token geometric mean probability for dense answers. ``p_yes``/``p_no`` are the raw next-token probability masses
    of the yes/no variants (NaN for other kinds). ``token_logprobs[b][q]`` holds a dense answer's per-token
    log-probabilities (with grad) and ``token_weights[b][q]`` their weights; both are None for other kinds.
    """

    rewards: torch.Tensor
    p_expected: torch.Tensor
    p_yes: torch.Tensor
    p_no: torch.Tensor
    weights: torch.Tensor
    mask: torch.Tensor
    question_ids: list[list[str]]
    token_logprobs: list[list[torch.Tensor | None]] = field(default_factory=list)
    token_weights: list[list[torch.Tensor | None]] = field(default_factory=list)

    def by_id(self, b: int) -> dict[str, torch.Tensor]:
        """Rewards of video ``b`` keyed by question id (0-dim tensors that keep their gradient)."""
        return {qid: self.rewards[b, q] for q, qid in enumerate(self.question_ids[b])}

    def p_expected_by_id(self, b: int) -> dict[str, float]:
        return {qid: float(self.p_expected[b, q]) for q, qid in enumerate(self.question_ids[b])}


class Critic(ABC):
    """A frozen VLM that scores videos against question sets.

    Parameters never require grad and the model stays in eval mode; gradients flow only to the input frames.
    ``score`` respects the caller's grad mode, so it also serves evaluation under ``torch.no_grad()``.
    """

    @abstractmethod
    def score(self, frames: torch.Tensor, question_sets: Sequence[QuestionSet]) -> CriticOutput:
        """frames [B,T,3,H,W] in [0,1] (may require grad), one question set per video -> CriticOutput."""

    @abstractmethod
    def explain(self, frames: torch.Tensor, question_sets: Sequence[QuestionSet]) -> list[list[str]]:
        """Generated answer text per video and question, without gradient and with bounded length."""
