"""Tiny critics of every family: rewards reach the pixels, the shared prefix equals one forward per question,
parameters stay frozen, explanations are bounded."""

from __future__ import annotations

import pytest
import torch

from critics.tiny import build_tiny_model

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "llava")


def _score(critic, frames, qsets):
    frames = frames.clone().requires_grad_(True)
    out = critic.score(frames, qsets)
    (out.rewards * out.weights).sum().backward()
    return out, frames.grad


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_equals_one_forward_per_question(family, make_critic, questions):
    frames = torch.rand(2, 4, 3, 56, 56)
    shared, grad_shared = _score(make_critic(family, shared_prefix=True), frames, questions)
    naive, grad_naive = _score(make_critic(family, shared_prefix=False), frames, questions)
    # The naive path is the official model(**inputs) forward, vision tower included, once per question (row);
    # float32 reassociation across batch sizes is the only difference.
    assert torch.allclose(shared.rewards, naive.rewards, atol=1e-4)
    assert torch.allclose(grad_shared, grad_naive, atol=1e-4 * grad_naive.abs().max())
    assert torch.isfinite(grad_shared).all() and grad_shared.abs().sum() > 0


@pytest.mark.parametrize("family", ("qwen2_vl", "llava"))
def test_scoring_in_chunks_of_rows_equals_one_forward(family, make_critic, questions):
    frames = torch.rand(2, 4, 3, 56, 56)
    whole, grad_whole = _score(make_critic(family, max_rows=1000), frames, questions)
    chunked, grad_chunked = _score(make_critic(family, max_rows=2), frames, questions)
    assert torch.allclose(chunked.rewards, whole.rewards, atol=1e-5, equal_nan=True)
    assert torch.allclose(grad_chunked, grad_whole, atol=1e-5 * grad_whole.abs().max())
    assert grad_whole.abs().sum() > 0


def test_qwen_frames_as_images_also_share_the_prefix(make_critic, questions):
    frames = torch.rand(2, 3, 3, 56, 56)
    shared, grad_shared = _score(make_critic("qwen2_5_vl", frames_as="images"), frames, questions)
    naive, grad_naive = _score(make_critic("qwen2_5_vl", frames_as="images", shared_prefix=False), frames, questions)
    assert torch.allclose(shared.rewards, naive.rewards, atol=1e-4)
    assert torch.allclose(grad_shared, grad_naive, atol=1e-4 * grad_naive.abs().max())


def test_output_is_padded_per_video_and_keyed_by_question_id(make_critic, questions):
    critic = make_critic("qwen2_vl")
    out = critic.score(torch.rand(2, 4, 3, 56, 56), questions)
    assert out.rewards.shape == out.mask.shape == (2, 4)
    assert out.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert list(out.by_id(1)) == ["red_cube", "colour"]
    assert out.rewards.dtype == torch.float32 and (out.rewards[out.mask] <= 0).all()  # log-probabilities
    assert torch.isnan(out.p_yes[0, 1]) and 0 < out.p_yes[0, 0] < 1  # p(yes) only for binary questions
    assert ((out.p_expected[out.mask] > 0) & (out.p_expected[out.mask] <= 1)).all()
    caption = out.token_logprobs[0][2]
    assert caption is not None and out.token_logprobs[0][0] is None
    # The dense reward is the weighted mean of its token log-probs.
    w = out.token_weights[0][2]
    assert torch.allclose(out.rewards[0, 2], (caption * w).sum() / w.sum())


def test_binary_reward_options_follow_their_definitions(make_critic, questions):
    frames = torch.rand(1, 2, 3, 56, 56)
    logprob = make_critic("qwen2_vl").score(frames, questions[1:])
    margin = make_critic("qwen2_vl", binary_reward="margin").score(frames, questions[1:])
    p_yes, p_no = margin.p_yes[0, 0], margin.p_no[0, 0]
    assert torch.allclose(margin.rewards[0, 0], p_yes.log() - p_no.log(), atol=1e-5)
    assert torch.allclose(logprob.rewards[0, 0], (p_yes / (p_yes + p_no)).log(), atol=1e-5)


def test_critic_parameters_are_frozen_and_get_no_gradient(make_critic, questions):
    critic = make_critic("qwen2_vl")
    assert not critic.model.training
    assert not any(p.requires_grad for p in critic.model.parameters())
    _score(critic, torch.rand(2, 4, 3, 56, 56), questions)
    assert all(p.grad is None for p in critic.model.parameters())


def test_score_respects_no_grad(make_critic, questions):
    frames = torch.rand(2, 4, 3, 56, 56, requires_grad=True)
    with torch.no_grad():
        out = make_critic("llava").score(frames, questions)
    assert not out.rewards.requires_grad


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_explain_returns_bounded_text_per_question(family, make_critic, questions):
    critic = make_critic(family, max_explain_tokens=5)
    texts = critic.explain(torch.rand(2, 2, 3, 56, 56), questions)
    assert [len(t) for t in texts] == [4, 2] and all(isinstance(s, str) for s in texts[0])
    # Random weights emit arbitrary bytes (re-encoding them is not stable), so bound characters: 5 tokens at most.
    longest = max(len(token) for token in critic.tokenizer.get_vocab())
    assert all(len(text) <= 5 * longest for text in texts[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_critic_round_trips_through_save_and_from_pretrained(family, tiny_dirs):
    from transformers import AutoTokenizer

    model, tokenizer = build_tiny_model(family)
    loaded = AutoTokenizer.from_pretrained(tiny_dirs[family])
    text = "<|im_start|>user\nIs the red cube moving? Yes" if family != "llava" else "USER: <image>\nIs it red? Yes"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.chat_template == tokenizer.chat_template
    assert len(tokenizer.encode("Yes", add_special_tokens=False)) == 1


def test_sampled_explanations_are_bounded_too(make_critic, questions):
    critic = make_critic("qwen2_5_vl", max_explain_tokens=3, explain_do_sample=True, explain_temperature=1.0)
    texts = critic.explain(torch.rand(1, 2, 3, 28, 28), questions[1:])
    longest = max(len(token) for token in critic.tokenizer.get_vocab())
    assert len(texts[0]) == 2 and all(len(text) <= 3 * longest for text in texts[0])


@pytest.mark.parametrize("mode", ["score", "explain"])
def test_reply_logprobs_equal_the_official_forward_of_prompt_reply_and_end_of_turn(make_critic, questions, mode):
    """What the toy critic's words phase is trained on: each reply's tokens and the end of the turn, teacher-forced
    after the prompt ``explain`` generates from; checked against transformers' own forward of the whole sequence."""
    critic = make_critic("qwen2_vl")
    frames = torch.rand(1, 4, 3, 56, 56)
    replies = ["yes: the cube is red.", "red", "a red cube on the floor", "no"]
    (out,) = critic.reply_logprobs(frames, [questions[0].questions], [replies], [[mode] * len(replies)])
    vision = critic.prepare_vision(frames[0])
    end = critic.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for q, text, (logprobs, targets) in zip(questions[0], replies, out):
        prompt = critic.prompt_ids(q, vision, 4, mode)
        reply = critic.tokenizer(text, add_special_tokens=False)["input_ids"] + [end]
        ids = torch.tensor([prompt + reply])
        with torch.no_grad():
            logits = critic.model(input_ids=ids, **vision.model_inputs, **critic.official_kwargs(ids)).logits[0]
        assert targets.tolist() == reply
        # float32 reassociation between the shared prefix's two forwards and one forward is the only difference
        torch.testing.assert_close(logprobs, torch.log_softmax(logits[len(prompt) - 1 : -1], -1), atol=1e-4, rtol=0)
