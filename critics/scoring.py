"""Turn the critic's log-probabilities into rewards for the three question kinds.

Kept apart from any model so the reward definitions (binary renormalisation, choice log-softmax, weighted dense
likelihood) can be read and tested on plain tensors.
"""

from __future__ import annotations

import re

import torch

from drf.errors import CriticError

YES_VARIANTS = ("Yes", "yes", "YES", " Yes", " yes", " YES")
NO_VARIANTS = ("No", "no", "NO", " No", " no", " NO")


def single_token_ids(tokenizer, variants: tuple[str, ...]) -> list[int]:
    """Ids of the variants that the tokenizer encodes as exactly one token (deduplicated, in order)."""
    ids: list[int] = []
    for text in variants:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    return ids


def answer_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """(yes ids, no ids) used to renormalise binary answers; fails when the tokenizer has neither as one token."""
    yes, no = single_token_ids(tokenizer, YES_VARIANTS), single_token_ids(tokenizer, NO_VARIANTS)
    if not yes or not no:
        raise CriticError(
            "the critic's tokenizer has no single-token 'yes'/'no' answers; binary questions cannot be scored with it"
        )
    return yes, no


def binary_reward(
    logprobs: torch.Tensor, yes_ids: list[int], no_ids: list[int], expected_yes: bool, kind: str = "logprob"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token logprobs [V] -> (reward, p_expected renormalised, raw p_yes, raw p_no).

    ``logprob``: log p(expected) / (p(yes) + p(no)); ``margin``: log p(yes) - log p(no), negated when 'no' is expected.
    """
    log_yes = torch.logsumexp(logprobs[yes_ids], dim=0)
    log_no = torch.logsumexp(logprobs[no_ids], dim=0)
    log_exp, log_other = (log_yes, log_no) if expected_yes else (log_no, log_yes)
    log_p = log_exp - torch.logaddexp(log_exp, log_other)
    reward = log_p if kind == "logprob" else log_exp - log_other
    return reward, log_p.detach().exp(), log_yes.detach().exp(), log_no.detach().exp()


def choice_reward(option_logprobs: torch.Tensor, expected: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-likelihood of each option's tokens [K] -> (log-softmax of the expected option, its probability)."""
    log_p = torch.log_softmax(option_logprobs, dim=0)[expected]
    return log_p, log_p.detach().exp()


def dense_reward(token_logprobs: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced answer token logprobs [N] -> (weighted mean log-likelihood, its per-token probability)."""
    mean = (token_logprobs * weights).sum() / weights.sum().clamp_min(1e-12)
    return mean, mean.detach().exp()


_WORD = re.compile(r"\w+")


def token_weights(answer: str, offsets: list[tuple[int, int]], word_weights: dict[str, float] | None) -> list[float]:
    """Weight of each answer token: the weight of the word it overlaps (case-insensitive), else 1.0."""
    if not word_weights:
        return [1.0] * len(offsets)
    lowered = {k.lower(): float(v) for k, v in word_weights.items()}
    spans = [(m.start(), m.end(), lowered.get(m.group().lower(), 1.0)) for m in _WORD.finditer(answer)]
    weights = []
    for start, end in offsets:
        weight = 1.0
        for w_start, w_end, w in spans:
            if start < w_end and end > w_start:
                weight = w
                break
        weights.append(weight)
    if sum(weights) <= 0:
        raise CriticError(f"token_weights give every token of the answer {answer!r} weight 0; keep one word positive")
    return weights
