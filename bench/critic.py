"""Shared prefix vs one forward per question: time to score one video and backpropagate to its pixels.

The critic is a randomly initialised Qwen2.5-VL sized so the vision tower and the video prefix dominate (as with real
critics, where hundreds of visual tokens precede a question of twenty). Prints one line per figure and ends with the
headline ratio at 8 questions; never asserts.
"""

from __future__ import annotations

import argparse
import time

import torch

from critics.config import CriticConfig
from critics.qwen2_vl import QWEN_FAMILIES, QwenVLCritic
from critics.tiny import build_tokenizer, qwen_vision_token_ids
from prompts.schema import Question, QuestionSet

SUBJECTS = (
    "red cube",
    "blue sphere",
    "green cylinder",
    "yellow cone",
    "white box",
    "black ball",
    "orange cube",
    "purple sphere",
)


def build_critic(hidden: int, layers: int, max_pixels: int) -> QwenVLCritic:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer("qwen2_5_vl")
    ids = qwen_vision_token_ids(tokenizer)
    head_dim = 32
    text = dict(
        vocab_size=(len(tokenizer) + 63) // 64 * 64,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "mrope_section": [8, 4, 4], "rope_theta": 10000.0},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        depth=layers,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_heads=hidden // head_dim,
        out_hidden_size=hidden,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[layers - 1],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids))
    config = CriticConfig(family="qwen2_5_vl", path="bench", max_pixels=max_pixels)
    return QwenVLCritic(model, tokenizer, config, QWEN_FAMILIES["qwen2_5_vl"])


def question_set(n: int) -> QuestionSet:
    questions = [
        Question(
            f"q{i}",
            "alignment",
            "binary",
            f"Is there a {SUBJECTS[i % 8]} in the video{'?' * (1 + i // 8)}",
            "yes" if i % 2 == 0 else "no",
        )
        for i in range(n)
    ]
    return QuestionSet("bench", questions)


def run_once(critic: QwenVLCritic, frames: torch.Tensor, qset: QuestionSet, shared: bool):
    """Seconds of score + backward to the pixels, the rewards, and the pixel gradient."""
    critic.config.shared_prefix = shared
    x = frames.clone().requires_grad_(True)
    start = time.perf_counter()
    out = critic.score(x, [qset])
    out.rewards.sum().backward()
    return time.perf_counter() - start, out.rewards.detach(), x.grad


def compare(critic: QwenVLCritic, frames: torch.Tensor, qset: QuestionSet, repeats: int):
    """Shared and naive runs interleaved; the fastest of each (robust to a busy machine) and both outputs."""
    best = {True: float("inf"), False: float("inf")}
    outputs = {}
    for _ in range(repeats):
        for shared in (True, False):
            seconds, rewards, grad = run_once(critic, frames, qset, shared)
            best[shared] = min(best[shared], seconds)
            outputs[shared] = (rewards, grad)
    return best[True], best[False], outputs[True], outputs[False]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", default="1,4,8,16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    critic = build_critic(args.hidden, args.layers, args.size * args.size)
    frames = torch.rand(1, args.frames, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    vision = critic.prepare_vision(frames[0])
    run_once(critic, frames, question_set(1), True)  # warm-up
    params = sum(p.numel() for p in critic.model.parameters()) / 1e6
    print(f"critic: qwen2.5-vl random init, {params:.1f}M parameters, {args.threads} threads")
    print(f"video: {args.frames} frames {args.size}x{args.size} -> {sum(vision.counts)} visual tokens")
    ratios = {}
    for n in (int(x) for x in args.questions.split(",")):
        qset = question_set(n)
        shared_s, naive_s, (shared_r, shared_g), (naive_r, naive_g) = compare(critic, frames, qset, args.repeats)
        ratios[n] = naive_s / shared_s
        reward_diff = float((shared_r - naive_r).abs().max())
        grad_diff = float((shared_g - naive_g).abs().max() / naive_g.abs().max())
        print(
            f"questions={n:2d}  shared {shared_s:7.3f} s  naive {naive_s:7.3f} s  ratio {ratios[n]:5.2f}x  "
            f"max|reward diff| {reward_diff:.1e}  max|grad diff|/max|grad| {grad_diff:.1e}"
        )
    key = 8 if 8 in ratios else max(ratios)
    print(
        f"headline: shared prefix is {ratios[key]:.2f}x faster than one forward per question at {key} questions "
        "(score + backward to pixels)"
    )


if __name__ == "__main__":
    main()
