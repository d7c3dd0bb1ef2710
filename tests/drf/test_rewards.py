"""Reward aggregation: hand-computed values, exact gradient coefficients, absent aspects, errors, metric names."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from drf.errors import InputError, QuestionError
from drf.rewards import NamedReward, Reward, RewardOutput, aggregate, combine, reward_metrics


def two_videos(requires_grad: bool = False) -> RewardOutput:
    """Video 0: two alignment questions (w 1, 3) and one physics question (w 2).
    Video 1: one alignment question (w 2), no physics; its padding holds NaN, which must never leak."""
    rewards = torch.tensor([[-1.0, -0.5, -2.0], [-0.25, float("nan"), float("nan")]], requires_grad=requires_grad)
    return RewardOutput(
        per_question=rewards,
        mask=torch.tensor([[True, True, True], [True, False, False]]),
        question_ids=[["a.red", "a.cube", "p.fall"], ["a.blue"]],
        aspects=[["alignment", "alignment", "physics"], ["alignment"]],
        weights=torch.tensor([[1.0, 3.0, 2.0], [2.0, 0.0, 0.0]]),
    )


def test_aggregate_matches_hand_computation():
    total, per_aspect = aggregate(two_videos(), {"alignment": 1.0, "physics": 3.0})
    align0 = (1 * -1.0 + 3 * -0.5) / 4  # -0.625
    expected0 = (1.0 * align0 + 3.0 * -2.0) / (1.0 + 3.0)  # both aspects present
    expected1 = -0.25  # physics is absent for video 1: excluded, not counted as zero
    # float32 sums of a handful of exact binary fractions: exact up to one rounding.
    torch.testing.assert_close(total, torch.tensor([expected0, expected1]), rtol=0, atol=1e-7)
    torch.testing.assert_close(per_aspect["alignment"], torch.tensor([align0, -0.25]))
    assert per_aspect["physics"][0].item() == -2.0 and math.isnan(per_aspect["physics"][1].item())


def test_aspect_weights_default_to_one():
    total, _ = aggregate(two_videos())
    assert total[0].item() == pytest.approx((-0.625 + -2.0) / 2)


def test_gradient_coefficients_are_question_share_times_aspect_share():
    out = two_videos(requires_grad=True)
    total, _ = aggregate(out, {"alignment": 1.0, "physics": 3.0})
    total.sum().backward()
    # d total_b / d r_q = w_q / Σ w_aspect · a_aspect / Σ a_present
    expected = torch.tensor(
        [
            [1 / 4 * 1 / 4, 3 / 4 * 1 / 4, 2 / 2 * 3 / 4],
            [2 / 2 * 1 / 1, 0.0, 0.0],  # padding gets exactly zero gradient, not NaN
        ]
    )
    torch.testing.assert_close(out.per_question.grad, expected, rtol=0, atol=1e-7)


def test_gradient_reaches_upstream_inputs_through_from_rows():
    x = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    out = RewardOutput.from_rows(
        [[x[0] * 2, x[1]], [x[2]]],
        question_ids=[["q1", "q2"], ["q3"]],
        aspects=[["quality", "temporal"], ["quality"]],
        weights=[[1.0, 1.0], [1.0]],
    )
    assert out.mask.tolist() == [[True, True], [True, False]]
    total, _ = aggregate(out)
    total.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([2 * 0.5, 0.5, 1.0]))


def test_zero_weight_question_is_logged_but_does_not_count():
    out = two_videos()
    out.weights[0, 2] = 0.0  # physics question of video 0 now weighs nothing: physics counts as absent there
    total, per_aspect = aggregate(out, {"physics": 3.0})
    assert total[0].item() == pytest.approx(-0.625)
    assert math.isnan(per_aspect["physics"][0].item())
    assert reward_metrics(out, per_aspect, total)["reward/q/p.fall"] == -2.0


def test_video_without_weighted_questions_names_the_prompt():
    out = two_videos()
    out.weights[1, 0] = 0.0
    with pytest.raises(QuestionError, match=r"prompt 1: no question with positive weight .*\['a.blue'\]"):
        aggregate(out)
    with pytest.raises(QuestionError, match="prompt 1: "):
        aggregate(two_videos(), {"alignment": 0.0})  # video 1 has only alignment, now weighted 0


def test_negative_or_nan_question_weight_names_the_question():
    out = two_videos()
    out.weights[0, 1] = float("nan")
    with pytest.raises(QuestionError, match=r"prompt 0, question 'a.cube' \(alignment\): weight nan"):
        aggregate(out)


def test_metrics_use_question_ids_and_aspects():
    out = two_videos()
    total, per_aspect = aggregate(out)
    metrics = reward_metrics(out, per_aspect, total)
    assert set(metrics) == {
        "reward/total",
        "reward/aspect/alignment",
        "reward/aspect/physics",
        "reward/q/a.red",
        "reward/q/a.cube",
        "reward/q/p.fall",
        "reward/q/a.blue",
    }
    assert metrics["reward/aspect/physics"] == -2.0  # mean over the one video that has physics, not over both
    assert metrics["reward/aspect/alignment"] == pytest.approx((-0.625 - 0.25) / 2)
    assert metrics["reward/total"] == pytest.approx(total.mean().item())
    assert all(isinstance(v, float) for v in metrics.values())


def test_shared_question_id_is_averaged_over_videos_that_have_it():
    out = RewardOutput.from_rows(
        [[torch.tensor(-1.0)], [torch.tensor(-3.0), torch.tensor(0.0)]],
        question_ids=[["q"], ["q", "r"]],
        aspects=[["quality"], ["quality", "quality"]],
        weights=[[1.0], [1.0, 1.0]],
    )
    total, per_aspect = aggregate(out)
    assert reward_metrics(out, per_aspect, total, prefix="eval")["eval/q/q"] == -2.0


def test_named_reward_and_combine_join_along_questions():
    aesthetic = NamedReward("aesthetic", lambda frames, prompts: frames.mean(dim=(1, 2, 3, 4)), weight=1.0)
    assert isinstance(aesthetic, Reward)
    frames = torch.rand(2, 3, 3, 4, 4, requires_grad=True)
    extra = aesthetic(frames, ["a", "b"])
    combined = combine([two_videos(), extra])
    assert combined.per_question.shape == (2, 4)
    assert combined.question_ids[1] == ["a.blue", "", "", "aesthetic"]
    assert combined.mask.tolist() == [[True, True, True, True], [True, False, False, True]]
    total, per_aspect = aggregate(combined, {"aesthetic": 2.0})
    assert set(per_aspect) == {"alignment", "physics", "aesthetic"}
    expected1 = (-0.25 + 2.0 * frames[1].mean().item()) / 3
    assert total[1].item() == pytest.approx(expected1, abs=1e-6)
    total.sum().backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0


def test_combine_rejects_a_question_id_used_twice():
    reward = NamedReward("score", lambda frames, prompts: frames.sum(dim=1))
    frames = torch.zeros(2, 3)
    with pytest.raises(QuestionError, match="prompt 0: question id 'score' appears twice"):
        combine([reward(frames, ["a", "b"]), reward(frames, ["a", "b"])])


def test_named_reward_checks_its_output_shape():
    reward = NamedReward("bad", lambda frames, prompts: frames)
    with pytest.raises(InputError, match=r"reward 'bad' returned shape \(2, 3\), expected \(2,\)"):
        reward(torch.zeros(2, 3), ["a", "b"])


def test_from_critic_takes_aspects_from_the_question_sets_by_id():
    critic = SimpleNamespace(
        rewards=torch.tensor([[-1.0, -2.0], [-0.5, 0.0]]),
        mask=torch.tensor([[True, True], [True, False]]),
        weights=torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
        question_ids=[["q2", "q1"], ["q3"]],
        p_expected=torch.tensor([[0.4, 0.1], [0.6, 0.0]]),
    )

    def qset(*pairs):
        return SimpleNamespace(questions=[SimpleNamespace(id=i, aspect=a) for i, a in pairs])

    sets = [qset(("q1", "physics"), ("q2", "alignment")), qset(("q3", "quality"))]
    out = RewardOutput.from_critic(critic, sets)
    assert out.aspects == [["alignment", "physics"], ["quality"]]
    assert torch.equal(out.extras["p_expected"], critic.p_expected)
    with pytest.raises(QuestionError, match="prompt 1: critic answered question 'q3' that its question set lacks"):
        RewardOutput.from_critic(critic, [sets[0], qset(("x", "quality"))])
