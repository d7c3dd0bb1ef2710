"""Train the toy critic: a small Qwen2-VL (video input) that answers the toy questions.

Training goes through the critic's own ``score`` (the same chat template, preprocessing, shared prefix and reward as at
scoring time) and maximises the reward of the labelled answer, i.e. ``log p(answer)`` renormalised over yes/no for
binary questions and over the options for choice questions, so what is trained is exactly what DRF later reads.

Labels:
- renders: exact answers from ``drf.toyworld.truth`` for the questions of the clip's own prompt and of another clip's
  prompt (which brings "no" answers), on clean and degraded copies whose labels stay valid: blur (not sharp), noise
  (artifacts), per-frame brightness flicker (flicker), shuffled frames (inconsistent, not smooth; motion questions
  dropped) and reversed frames (camera and object motions reversed; spatial questions dropped);
- samples of the toy T2V model: answers measured by the pixel oracle (``drf.toyworld.oracle``), only for the question
  templates it supports. These labels are the oracle's, not ground truth; held-out T2V samples (other prompts, other
  seeds) measure agreement with it separately.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from critics.config import CriticConfig
from critics.qwen2_vl import QWEN_FAMILIES, QwenVLCritic
from critics.tiny import build_tokenizer, padded_vocab_size, qwen_vision_token_ids
from drf.device import resolve_device
from drf.toyworld import oracle
from drf.toyworld.assets import CRITIC_DIR, load_toy_generator
from drf.toyworld.facts import answer, template_name
from drf.toyworld.scene import Scene
from drf.toyworld.train.data import clips
from drf.toyworld.train.loop import Clock, log, lr_at, setup
from drf.toyworld.train.t2v import sample_videos
from drf.toyworld.truth import truth
from prompts.registry import decompose
from prompts.schema import QuestionSet

TEXT_ARCH = dict(
    hidden_size=96,
    intermediate_size=256,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_parameters={"rope_type": "default", "mrope_section": [4, 4, 4], "rope_theta": 10000.0},
)
VISION_ARCH = dict(
    depth=3, embed_dim=64, mlp_ratio=2, num_heads=4, patch_size=14, spatial_merge_size=2, temporal_patch_size=2
)
REVERSED_MOTION = {
    "pan_left": "pan_right", "pan_right": "pan_left", "dolly_in": "dolly_out", "dolly_out": "dolly_in",
    "orbit_left": "orbit_right", "orbit_right": "orbit_left", "left": "right", "right": "left",
    "toward": "away", "away": "toward",
}  # fmt: skip


@dataclass
class CriticTrainConfig:
    steps: int = field(default=600, metadata={"help": "Optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation, batches and degradations."})
    renders_per_step: int = field(default=4, metadata={"help": "Rendered clips per step."})
    samples_per_step: int = field(default=2, metadata={"help": "T2V samples per step (oracle-labelled)."})
    questions_per_video: int = field(default=8, metadata={"help": "Questions drawn per video per step."})
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate (warm-up then cosine)."})
    train_clips: int = field(default=1000, metadata={"help": "Rendered training clips."})
    eval_clips: int = field(default=60, metadata={"help": "Held-out renders for accuracy."})
    t2v_train: int = field(default=96, metadata={"help": "T2V samples (train prompts) for training."})
    t2v_eval: int = field(default=32, metadata={"help": "T2V samples (held-out prompts) for oracle agreement."})
    t2v_steps: int = field(default=12, metadata={"help": "Sampling steps of the T2V samples."})
    t2v_guidance: float = field(default=4.0, metadata={"help": "CFG scale of the T2V samples."})
    min_pixels: int = field(
        default=84 * 84,
        metadata={"help": "Qwen min_pixels: 64x64 frames are resized up to this area (84x84: 3x3 vision tokens per "
                  "frame pair; 56x56 leaves 2x2, too coarse for colours and positions). Scoring must use the same."},
    )
    minutes: float = field(default=0.0, metadata={"help": "Stop after this wall time (0: no cap)."})
    threads: int = field(default=1, metadata={"help": "CPU threads (1: on shared CPUs more threads wait on each other)."})


# ---------------------------------------------------------------------------------------------------------------
# Labelled questions


@lru_cache(maxsize=4096)
def _questions(prompt: str) -> tuple:
    return tuple(decompose(prompt))


def _labelled(questions, answer_of: Callable) -> list:
    """Copies of ``questions`` whose ``expected`` is the label (questions without a label are dropped)."""
    out = []
    for q in questions:
        label = answer_of(q)
        if label is None or (q.kind == "choice" and label not in q.options):
            continue
        if q.kind == "binary" and label not in ("yes", "no"):
            continue
        out.append(dataclasses.replace(q, expected=label))
    return out


def reversed_scene(scene: Scene) -> Scene:
    """The scene whose truth describes the video played backwards (camera and object motions reversed)."""
    camera = dataclasses.replace(scene.camera, motion=REVERSED_MOTION.get(scene.camera.motion, scene.camera.motion))
    objects = tuple(dataclasses.replace(o, motion=REVERSED_MOTION.get(o.motion, o.motion)) for o in scene.objects)
    return dataclasses.replace(scene, objects=objects, camera=camera)


def _blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=frames.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    t, c, h, w = frames.shape
    flat = frames.reshape(t * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(t, c, h, w)


DEGRADATIONS = ("clean", "blur", "noise", "flicker", "shuffle", "reverse")
_DEGRADATION_WEIGHTS = (0.4, 0.13, 0.13, 0.1, 0.12, 0.12)
# Per degradation: answers it sets, and question templates whose truth it breaks (dropped).
_OVERRIDES = {
    "blur": ({"qual.sharpness": "no"}, ("qual.rating",)),
    "noise": ({"qual.artifacts": "yes"}, ("qual.sharpness", "qual.rating")),
    "flicker": ({"qual.flicker": "yes"}, ("qual.rating", "temp.consistency")),
    "shuffle": (
        {"temp.consistency": "no", "temp.smoothness": "no"},
        ("align.motion", "align.camera", "phys.plausibility", "qual.flicker", "qual.rating"),
    ),
    "reverse": ({}, ("align.spatial",)),
    "clean": ({}, ()),
}


def degrade(frames: torch.Tensor, kind: str, rng: random.Random) -> torch.Tensor:
    """frames [T,3,H,W] in [0,1] -> the degraded copy."""
    if kind == "blur":
        return _blur(frames, rng.uniform(1.0, 2.0))
    if kind == "noise":
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        return (frames + rng.uniform(0.06, 0.15) * torch.randn(frames.shape, generator=gen)).clamp(0, 1)
    if kind == "flicker":
        scales = torch.tensor([rng.uniform(0.6, 1.4) for _ in range(frames.shape[0])]).view(-1, 1, 1, 1)
        return (frames * scales).clamp(0, 1)
    if kind == "shuffle":
        order = list(range(frames.shape[0]))
        while order == sorted(order):
            rng.shuffle(order)
        return frames[order]
    if kind == "reverse":
        return frames.flip(0)
    return frames


def render_questions(scene: Scene, prompts: list[str], kind: str) -> list:
    """Labelled questions of ``prompts`` for a render of ``scene`` degraded by ``kind``."""
    overrides, dropped = _OVERRIDES[kind]
    target = reversed_scene(scene) if kind == "reverse" else scene

    def answer_of(q):
        if q.id in overrides:
            return overrides[q.id]
        if template_name(q) in dropped or q.id in dropped:
            return None
        return truth(target, q)

    seen, out = set(), []
    for prompt in prompts:
        for q in _labelled(_questions(prompt), answer_of):
            if q.id not in seen:
                seen.add(q.id)
                out.append(q)
    return out


def oracle_questions(video: torch.Tensor, prompt: str) -> list:
    """Questions of ``prompt`` labelled by the oracle's measurement of ``video`` (supported templates only)."""
    facts = oracle.analyze(video)
    return _labelled(_questions(prompt), lambda q: answer(facts, q))


# ---------------------------------------------------------------------------------------------------------------
# Model


def build_critic_model(seed: int):
    """-> (Qwen2VLForConditionalGeneration, tokenizer) at the toy critic's size, seeded."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tokenizer = build_tokenizer("qwen2_vl")
    ids = qwen_vision_token_ids(tokenizer)
    text = dict(
        TEXT_ARCH,
        vocab_size=padded_vocab_size(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.pad_token_id,
    )
    vision = dict(VISION_ARCH, hidden_size=TEXT_ARCH["hidden_size"])
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision, **ids))
    return model, tokenizer


def make_critic(model, tokenizer, min_pixels: int):
    """The scoring adapter drf uses at DRF time, over ``model`` (default critic settings but ``min_pixels``)."""
    config = CriticConfig(family="qwen2_vl", path="toy", min_pixels=min_pixels)
    return QwenVLCritic(model, tokenizer, config, QWEN_FAMILIES["qwen2_vl"])


# ---------------------------------------------------------------------------------------------------------------
# Training and evaluation


def t2v_samples(root: Path, prompts: list[str], config: CriticTrainConfig, seed: int) -> torch.Tensor:
    generator = load_toy_generator(Path(root))
    return sample_videos(generator, prompts, config.t2v_steps, config.t2v_guidance, seed)


def train_critic(config: CriticTrainConfig, root: Path, device: str = "auto") -> tuple[object, dict]:
    dev = resolve_device(device)
    setup(config.seed, dev, config.threads)
    rng = random.Random(config.seed)
    clock = Clock(config.minutes)
    train = clips(config.train_clips, config.seed, "train")
    held_out = clips(config.eval_clips, config.seed + 1, "eval")
    t2v_prompts = [train.prompts[rng.randrange(len(train))] for _ in range(config.t2v_train)]
    t2v_eval_prompts = clips(config.t2v_eval, config.seed + 2, "eval").prompts
    sampled = t2v_samples(root, t2v_prompts + t2v_eval_prompts, config, config.seed + 7)
    t2v_train = [(v, oracle_questions(v, p)) for v, p in zip(sampled[: config.t2v_train], t2v_prompts)]
    t2v_train = [item for item in t2v_train if item[1]]
    t2v_eval = list(zip(sampled[config.t2v_train :], t2v_eval_prompts))
    log(f"{len(sampled)} T2V samples labelled by the oracle in {clock.elapsed:.0f}s")

    model, tokenizer = build_critic_model(config.seed)
    model.to(dev)
    critic = make_critic(model, tokenizer, config.min_pixels)
    model.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    done, ema = 0, None
    for step in range(config.steps):
        if clock.expired():
            log(f"time cap reached after {step} steps")
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, clock.progress(step, config.steps), config.lr, warmup=30)
        videos, qsets = [], []
        for _ in range(config.renders_per_step):
            i = rng.randrange(len(train))
            kind = rng.choices(DEGRADATIONS, weights=_DEGRADATION_WEIGHTS)[0]
            other = train.prompts[rng.randrange(len(train))]
            questions = render_questions(train.scenes[i], [train.prompts[i], other], kind)
            videos.append(degrade(train.frames(i), kind, rng))
            qsets.append(questions)
        for _ in range(config.samples_per_step if t2v_train else 0):
            video, questions = t2v_train[rng.randrange(len(t2v_train))]
            videos.append(video)
            qsets.append(questions)
        loss = _loss(critic, videos, qsets, config.questions_per_video, rng, dev)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        done += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 20 == 0:
            log(f"critic step {step} loss {loss.item():.4f} (ema {ema:.4f}) {clock.elapsed:.0f}s")
    train_seconds = round(clock.elapsed, 1)
    model.requires_grad_(False).eval()
    metrics = evaluate_critic(critic, held_out, t2v_eval, dev)
    log(f"critic metrics {metrics}")
    out = Path(root) / CRITIC_DIR
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    summary = {
        "steps": done,
        "train_seconds": train_seconds,
        "final_loss_ema": round(ema or float("nan"), 4),
        "parameters": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        "config": asdict(config),
        "critic_config": {
            "family": "qwen2_vl", "frames_as": "video", "max_pixels": 224 * 224, "min_pixels": config.min_pixels,
        },  # fmt: skip
        "labels": {
            "renders": "exact (drf.toyworld.truth), clean and degraded: " + ", ".join(DEGRADATIONS[1:]),
            "t2v_samples": f"{len(t2v_train)} samples of the toy T2V model labelled by the pixel oracle",
        },
    }
    return model, summary


def _loss(critic, videos, qsets, per_video: int, rng: random.Random, device: torch.device) -> torch.Tensor:
    chosen = [QuestionSet(prompt="toy", questions=rng.sample(q, min(per_video, len(q)))) for q in qsets]
    frames = torch.stack(videos).to(device)
    out = critic.score(frames, chosen)
    mask = out.mask.to(out.rewards.device)
    return -(out.rewards * mask).sum() / mask.sum().clamp_min(1)


@torch.no_grad()
def _correct(critic, video: torch.Tensor, questions: list) -> list[tuple[str, bool]]:
    """(template, answered as labelled) per question: binary by p > 0.5, choice by p(label) > 0.5 (conservative)."""
    if not questions:
        return []
    out = critic.score(video[None], [QuestionSet(prompt="toy", questions=questions)])
    return [(template_name(q), float(out.p_expected[0, i]) > 0.5) for i, q in enumerate(questions)]


def _rates(pairs: list[tuple[str, bool]]) -> tuple[float, dict[str, float]]:
    by: dict[str, list[bool]] = {}
    for name, ok in pairs:
        by.setdefault(name, []).append(ok)
    overall = sum(ok for _, ok in pairs) / max(1, len(pairs))
    return round(overall, 4), {k: round(sum(v) / len(v), 3) for k, v in sorted(by.items())}


def evaluate_critic(critic, held_out, t2v_eval: list, device: torch.device) -> dict:
    """Accuracy on held-out renders (clean and degraded, exact labels, per template) and agreement with the oracle
    on held-out T2V samples."""
    rng = random.Random(1234)
    clean, degraded = [], []
    for i in range(len(held_out)):
        frames = held_out.frames(i)
        clean += _correct(critic, frames, render_questions(held_out.scenes[i], [held_out.prompts[i]], "clean"))
        kind = DEGRADATIONS[1 + i % (len(DEGRADATIONS) - 1)]
        questions = render_questions(held_out.scenes[i], [held_out.prompts[i]], kind)
        degraded += [(f"{kind}:{name}", ok) for name, ok in _correct(critic, degrade(frames, kind, rng), questions)]
    agreement = []
    for video, prompt in t2v_eval:
        agreement += _correct(critic, video, oracle_questions(video, prompt))
    clean_acc, clean_by = _rates(clean)
    degraded_acc, degraded_by = _rates(degraded)
    agree, agree_by = _rates(agreement)
    return {
        "accuracy_heldout_renders": clean_acc,
        "accuracy_heldout_renders_by_template": clean_by,
        "accuracy_heldout_degraded": degraded_acc,
        "accuracy_heldout_degraded_by_template": degraded_by,
        "agreement_with_oracle_t2v": agree,
        "agreement_with_oracle_t2v_by_template": agree_by,
        "eval_clips": len(held_out),
        "eval_t2v_samples": len(t2v_eval),
        "questions_scored": {"renders": len(clean), "degraded": len(degraded), "t2v": len(agreement)},
    }
