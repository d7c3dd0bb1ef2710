"""Reward definitions on plain tensors: binary renormalisation and margin, choice log-softmax, weighted dense."""

from __future__ import annotations

import math

import pytest
import torch

from critics.scoring import answer_token_ids, binary_reward, choice_reward, dense_reward, token_weights
from critics.tiny import build_tokenizer

YES, NO = [1, 2], [3]


def _logprobs(probs: dict[int, float], vocab: int = 6) -> torch.Tensor:
    rest = (1 - sum(probs.values())) / (vocab - len(probs))
    return torch.tensor([probs.get(i, rest) for i in range(vocab)]).log()


def test_binary_logprob_renormalises_over_all_yes_and_no_variants():
    lp = _logprobs({1: 0.2, 2: 0.1, 3: 0.1})
    reward, p, p_yes, p_no = binary_reward(lp, YES, NO, expected_yes=True)
    assert math.isclose(float(reward), math.log(0.3 / 0.4), rel_tol=1e-5)
    assert math.isclose(float(p), 0.75, rel_tol=1e-5)
    assert math.isclose(float(p_yes), 0.3, rel_tol=1e-5) and math.isclose(float(p_no), 0.1, rel_tol=1e-5)
    reward_no, p_exp_no, _, _ = binary_reward(lp, YES, NO, expected_yes=False)
    assert math.isclose(float(reward_no), math.log(0.25), rel_tol=1e-5) and math.isclose(
        float(p_exp_no), 0.25, rel_tol=1e-5
    )


def test_binary_margin_flips_sign_when_no_is_expected():
    lp = _logprobs({1: 0.2, 2: 0.1, 3: 0.1})
    yes_margin = binary_reward(lp, YES, NO, True, "margin")[0]
    no_margin = binary_reward(lp, YES, NO, False, "margin")[0]
    assert math.isclose(float(yes_margin), math.log(3), rel_tol=1e-5)
    assert math.isclose(float(no_margin), -math.log(3), rel_tol=1e-5)


def test_choice_is_log_softmax_over_option_likelihoods():
    scores = torch.tensor([-1.0, -2.0, -3.0])
    reward, p = choice_reward(scores, 1)
    assert math.isclose(float(reward), float(torch.log_softmax(scores, 0)[1]), rel_tol=1e-6)
    assert math.isclose(float(p), math.exp(float(reward)), rel_tol=1e-6)


def test_dense_is_weighted_mean_log_likelihood():
    lps = torch.tensor([-1.0, -3.0])
    assert math.isclose(float(dense_reward(lps, torch.tensor([1.0, 1.0]))[0]), -2.0)
    assert math.isclose(float(dense_reward(lps, torch.tensor([3.0, 1.0]))[0]), -1.5)


def test_token_weights_follow_the_word_each_token_overlaps():
    answer = "a red cube"
    offsets = [(0, 1), (1, 5), (5, 7), (7, 10)]  # "a", " red", " c", "ube"
    assert token_weights(answer, offsets, {"Red": 2.0, "cube": 3.0}) == [1.0, 2.0, 3.0, 3.0]
    assert token_weights(answer, offsets, None) == [1.0] * 4


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_tiny_tokenizer_has_single_token_yes_and_no_variants(family):
    yes, no = answer_token_ids(build_tokenizer(family))
    assert len(yes) >= 2 and len(no) >= 2 and not set(yes) & set(no)
