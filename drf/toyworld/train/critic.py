"""Train the toy critic: a small Qwen2-VL (frames as video) that answers the toy questions by looking.

Three phases, each resumable (state under ``root/.train/``):

1. **vision**: the vision tower (and the merger that feeds the language model) learns the cell targets of
   ``critic_data`` — what kind of object covers each token's cell, its size, motion, count, whether it is the
   leftmost, and the camera move — through linear heads that are thrown away afterwards. A vision tower trained only
   through the answers learns the answer priors first and the pixels last; this phase makes every token say what
   is where.
2. **answer**: the vision tower is frozen and the language model learns to answer balanced, truth-labelled questions
   through the critic's own ``score`` (the same chat template, preprocessing, shared prefix and reward as at DRF
   time), i.e. maximises ``log p(answer)`` renormalised over yes/no or over the options.
3. **words**: the vision tower stays frozen and the language model learns to say its answers in words, by
   teacher-forced cross-entropy on replies read off scene truth (``critic_words``): dense answers ("red", "two",
   "pan right") and the one-sentence explanations that ``explain`` generates ("no: the cube is blue."), with the
   answer phase's loss beside them at a small weight so the closed answers hold. Short; it also continues a trained
   critic (``init_from`` with ``answer_steps=0``).

Videos are rendered on the fly from scenes of the train split (fresh every step), some degraded and some passed
through the toy VAE, so the critic also sees the blur and colour shifts of decoded latents. The pixel oracle labels
nothing here.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from critics.config import CriticConfig
from critics.qwen2_vl import QWEN_FAMILIES, QwenVLCritic
from critics.tiny import build_tokenizer, padded_vocab_size, qwen_vision_token_ids
from drf.device import resolve_device
from drf.errors import InputError
from drf.toyworld.assets import CRITIC_DIR, GENERATOR_DIR, TRAIN_STATE_DIR, toy_generator_path, toy_vae_path
from drf.toyworld.render import render
from drf.toyworld.scene import WORLD_FRAMES, Scene, sample_scene
from drf.toyworld.train.critic_data import (
    BLANK,
    CELL_HEADS,
    DEGRADATION_WEIGHTS,
    DEGRADATIONS,
    IGNORE,
    balanced,
    cell_targets,
    degrade,
    question_prompts,
    render_questions,
    without_objects,
)
from drf.toyworld.train.critic_eval import evaluate_critic
from drf.toyworld.train.critic_words import replies
from drf.toyworld.train.loop import Clock, TrainState, log, lr_at, set_lr, setup
from drf.toyworld.train.vae import to_vae
from prompts.schema import QuestionSet

TEXT_ARCH = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_parameters={"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 10000.0},
)
VISION_ARCH = dict(
    depth=4, embed_dim=96, mlp_ratio=2, num_heads=4, patch_size=14, spatial_merge_size=2, temporal_patch_size=2
)
# 64x64 frames are resized up to 112x112: 8x8 patches of 14 px, merged 2x2 into 4x4 tokens (16 px cells) per frame pair.
MIN_PIXELS = 112 * 112
# Motion is read from the two frames of one temporal patch (vision attention stays within a patch pair), a weak
# signal that the other heads drown out at equal weight.
HEAD_WEIGHTS = {"camera": 3.0, "motion": 3.0}
SCENE_SEED_BASE = 50_000_000  # training scenes: seeds from here on (eval gates use their own, far away)


@dataclass
class CriticTrainConfig:
    vision_steps: int = field(default=1200, metadata={"help": "Steps of the vision phase (cell targets)."})
    answer_steps: int = field(default=2400, metadata={"help": "Steps of the answer phase (frozen vision tower)."})
    words_steps: int = field(
        default=300, metadata={"help": "Steps of the words phase (answers in words and explanations; 0: none)."}
    )
    steps: int = field(default=0, metadata={"help": "If > 0, overrides every phase's steps (quick runs and tests)."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation, scenes and degradations."})
    videos_per_step: int = field(default=8, metadata={"help": "Rendered videos per step."})
    questions_per_video: int = field(
        default=12,
        metadata={"help": "Balanced questions drawn per video (answer phase); explanations taught per video, besides "
                  "every dense answer (words phase)."},
    )  # fmt: skip
    vision_lr: float = field(default=2e-3, metadata={"help": "Peak learning rate of the vision phase."})
    answer_lr: float = field(default=1e-3, metadata={"help": "Peak learning rate of the answer phase."})
    words_lr: float = field(default=1e-3, metadata={"help": "Peak learning rate of the words phase."})
    words_answer_weight: float = field(
        default=0.25,
        metadata={"help": "Weight of the answer phase's loss (minus the mean reward of balanced labelled answers) "
                  "beside the words phase's cross-entropy, so the closed answers do not regress."},
    )  # fmt: skip
    vae_share: float = field(
        default=0.5,
        metadata={"help": "Share of videos passed through the toy VAE first (DRF scores decoded latents)."},
    )
    adversarial_eps: float = field(
        default=0.03,
        metadata={"help": "L-inf radius (pixels in [0,1]) of the vision phase's adversarial frames, trained on beside "
                  "the clean ones (0: none)."},
    )  # fmt: skip
    empty_share: float = field(
        default=0.15, metadata={"help": "Share of videos shown without their objects (half as a grey video)."}
    )
    init_from: str = field(
        default="",
        metadata={"help": "A trained critic folder to continue from: its weights are the start and the vision phase "
                  "is skipped (the answer and words phases train on; answer_steps=0: words only)."},
    )  # fmt: skip
    eval_renders: int = field(default=300, metadata={"help": "Held-out renders (an unused eval seed) for the gates."})
    eval_seed: int = field(default=4242, metadata={"help": "Seed of the held-out eval scenes."})
    words_eval: int = field(
        default=60,
        metadata={"help": "Held-out renders for the words gates (after a words phase): dense answers said exactly, "
                  "explanations whose claims the oracle confirms."},
    )  # fmt: skip
    t2v_eval: int = field(
        default=48, metadata={"help": "T2V samples (held-out prompts) for agreement with the oracle."}
    )
    min_pixels: int = field(
        default=MIN_PIXELS,
        metadata={
            "help": "Qwen min_pixels: 64x64 frames are resized up to this area (112x112: 4x4 vision tokens "
            "per frame pair, 16 px cells). Scoring must use the same."
        },
    )
    minutes: float = field(
        default=0.0, metadata={"help": "Wall-time cap of the vision and answer phases (0: none); split 1:2."}
    )
    words_minutes: float = field(default=0.0, metadata={"help": "Wall-time cap of the words phase (0: none)."})
    threads: int = field(
        default=1, metadata={"help": "CPU threads (1: on shared CPUs more threads wait on each other)."}
    )
    checkpoint_minutes: float = field(default=3.0, metadata={"help": "Minutes between saves of the training state."})

    def phase_steps(self) -> tuple[int, int, int]:
        """Steps of the vision, answer and words phases."""
        return (self.steps,) * 3 if self.steps > 0 else (self.vision_steps, self.answer_steps, self.words_steps)


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


def make_critic(model, tokenizer, min_pixels: int = MIN_PIXELS) -> QwenVLCritic:
    """The scoring adapter drf uses at DRF time, over ``model`` (default critic settings but ``min_pixels``)."""
    config = CriticConfig(family="qwen2_vl", path="toy", min_pixels=min_pixels)
    return QwenVLCritic(model, tokenizer, config, QWEN_FAMILIES["qwen2_vl"])


# ---------------------------------------------------------------------------------------------------------------
# Videos


@dataclass
class Example:
    """One training video as the critic sees it, with the scene it shows and how it was degraded."""

    frames: torch.Tensor  # [t,3,64,64], the critic's frames
    scene: Scene  # what the video shows (the truth)
    kind: str
    order: list[int]  # source frame of each critic frame
    masks: torch.Tensor  # [frames,n,64,64] the renderer's object masks
    asked: Scene  # the scene whose prompts are asked about it (``scene`` but for emptied or blank videos)


class Videos:
    """Fresh training videos: scenes of the train split drawn from ``seed``, rendered, degraded, some VAE round trips."""

    def __init__(self, seed: int, vae=None, vae_share: float = 0.0, empty_share: float = 0.0):
        self.rng = random.Random(seed)
        self.next_scene = SCENE_SEED_BASE + seed * 1_000_003
        self.vae, self.vae_share, self.empty_share = vae, vae_share, empty_share

    def draw(self, count: int) -> list[Example]:
        """``count`` fresh examples (the VAE round trips of a draw go through the VAE as one batch: 3x faster).

        A share ``empty_share`` shows the scene without its objects (half of those as a uniform grey video), asked
        about with the full scene's prompts: what is not there must be answered no."""
        asked = [sample_scene(self.next_scene + i, "train") for i in range(count)]
        self.next_scene += count
        empty = [self.rng.random() < self.empty_share for _ in asked]
        blank = [e and self.rng.random() < 0.5 for e in empty]
        scenes = [without_objects(s) if e else s for s, e in zip(asked, empty)]
        renders = [render(scene, WORLD_FRAMES, 64, 64, 1) for scene in scenes]
        frames = [out.rgb for out in renders]
        through_vae = [i for i in range(count) if self.vae is not None and self.rng.random() < self.vae_share]
        if through_vae:
            decoded = vae_round_trip(self.vae, torch.stack([frames[i] for i in through_vae]))
            for i, video in zip(through_vae, decoded):
                frames[i] = video
        examples = []
        for scene, video, out, question_scene, is_blank in zip(scenes, frames, renders, asked, blank):
            kind = BLANK if is_blank else self.rng.choices(DEGRADATIONS, weights=DEGRADATION_WEIGHTS)[0]
            if is_blank:
                video = torch.full_like(video, self.rng.uniform(0.2, 0.8))
            shown, order = degrade(video, kind, self.rng)
            examples.append(Example(shown, scene, kind, order, out.masks, question_scene))
        return examples

    def state(self) -> dict:
        return {"rng": self.rng.getstate(), "next_scene": self.next_scene}

    def load(self, state: dict) -> None:
        self.rng.setstate(state["rng"])
        self.next_scene = state["next_scene"]


@torch.no_grad()
def vae_round_trip(vae, frames: torch.Tensor) -> torch.Tensor:
    """frames [B,T,3,H,W] in [0,1] -> decoded(encoded(frames)) (the posterior mode), as the T2V model's decoder draws."""
    device = next(vae.parameters()).device
    out = vae(to_vae(frames).to(device)).sample.clamp(-1, 1)
    return (out.transpose(1, 2) * 0.5 + 0.5).cpu()


def load_vae(root: Path):
    from diffusers import AutoencoderKLWan

    path = Path(root) / GENERATOR_DIR / "vae"
    return AutoencoderKLWan.from_pretrained(path, dtype=torch.float32).eval() if path.is_dir() else None


class _GeneratorState:
    """``TrainState`` saves a generator's state; here the data stream is the state (a random.Random and a counter)."""

    def __init__(self, videos: Videos):
        self.videos = videos

    def get_state(self) -> dict:
        return self.videos.state()

    def set_state(self, state: dict) -> None:
        self.videos.load(state)


# ---------------------------------------------------------------------------------------------------------------
# Phases


def _features(critic: QwenVLCritic, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    return critic.batched_features([critic.prepare_vision(f.to(critic.device)) for f in frames])


def vision_loss(
    critic: QwenVLCritic, heads: torch.nn.Linear, batch: list[Example], frames: list[torch.Tensor] | None = None
) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of every cell-target head over every token of every video (``frames`` in place of the
    examples' own where given); per-head accuracy for the log."""
    features = torch.cat(_features(critic, frames if frames is not None else [e.frames for e in batch]))
    targets = [cell_targets(e.scene, e.masks, e.order, e.kind) for e in batch]
    logits = heads(features).split(list(CELL_HEADS.values()), dim=-1)
    total, accuracy = 0.0, {}
    for (name, _), logit in zip(CELL_HEADS.items(), logits):
        target = torch.cat([t[name].reshape(-1) for t in targets]).to(logit.device)
        if (target != IGNORE).any():
            total = total + HEAD_WEIGHTS.get(name, 1.0) * F.cross_entropy(logit, target, ignore_index=IGNORE)
            valid = target != IGNORE
            accuracy[name] = (logit.argmax(-1)[valid] == target[valid]).float().mean().item()
    return total, accuracy


def adversarial_frames(
    critic: QwenVLCritic, heads: torch.nn.Linear, batch: list[Example], eps: float, gen: torch.Generator
) -> list[torch.Tensor]:
    """The batch's frames moved up the cell-target loss within an L-inf ball of ``eps`` (one signed step of 1.25 eps
    from a random start: "fast" adversarial training). A tower that still says what is where on these frames has
    gradients that move objects rather than paint speckle (robust models' gradients are perceptually aligned)."""
    starts = [(e.frames + eps * (2 * torch.rand(e.frames.shape, generator=gen) - 1)).clamp(0, 1) for e in batch]
    starts = [f.to(critic.device).requires_grad_(True) for f in starts]
    loss, _ = vision_loss(critic, heads, batch, starts)
    grads = torch.autograd.grad(loss, starts)
    out = []
    for e, f, g in zip(batch, starts, grads):
        clean = e.frames.to(f.device)
        moved = torch.minimum(torch.maximum(f.detach() + 1.25 * eps * g.sign(), clean - eps), clean + eps)
        out.append(moved.clamp(0, 1))
    return out


def answer_loss(critic: QwenVLCritic, batch: list[Example], per_video: int, rng: random.Random) -> torch.Tensor:
    """Minus the mean reward of the labelled answers (the quantity DRF later reads)."""
    frames, qsets = [], []
    for e in batch:
        questions = render_questions(e.scene, question_prompts(e.asked, rng), e.kind)
        # An emptied video's object questions are all "no": kept whole (the other videos balance them).
        questions = balanced(questions, rng) if e.scene.objects else rng.sample(questions, len(questions))
        if questions:
            frames.append(e.frames)
            qsets.append(QuestionSet(prompt="toy", questions=questions[:per_video]))
    out = critic.score(torch.stack(frames), qsets)
    mask = out.mask.to(out.rewards.device)
    return -(out.rewards * mask).sum() / mask.sum().clamp_min(1)


def words_loss(critic: QwenVLCritic, batch: list[Example], per_video: int, rng: random.Random) -> torch.Tensor:
    """Teacher-forced cross-entropy per token of each reply and its end of turn (``critic_words.replies``: dense
    answers and explanations from scene truth), averaged per reply, then over the batch's replies."""
    taught = [(e, replies(e.scene, e.asked, e.kind, rng, per_video)) for e in batch]
    taught = [(e, r) for e, r in taught if r]
    if not taught:
        return torch.zeros((), device=critic.device)
    out = critic.reply_logprobs(
        torch.stack([e.frames for e, _ in taught]),
        [[x.question for x in r] for _, r in taught],
        [[x.text for x in r] for _, r in taught],
        [[x.mode for x in r] for _, r in taught],
    )
    losses = [-lp.gather(1, targets[:, None]).mean() for video in out for lp, targets in video]
    return torch.stack(losses).mean()


def _run_phase(
    name: str,
    config: CriticTrainConfig,
    root: Path,
    modules: dict,
    videos: Videos,
    params: list,
    steps: int,
    peak_lr: float,
    minutes: float,
    step_fn,
) -> dict:
    """A resumable loop of ``steps`` optimiser steps of ``step_fn(step) -> (loss, extras)`` with warm-up + cosine;
    ``modules`` and the ``videos`` stream are what a resumed run restores."""
    optimizer = torch.optim.AdamW(params, lr=peak_lr, weight_decay=0.01)
    clock = Clock(minutes)
    state = TrainState(
        Path(root) / TRAIN_STATE_DIR / f"critic-{name}.pt",
        modules,
        optimizer,
        _GeneratorState(videos),
        clock,
        every_minutes=config.checkpoint_minutes,
    )
    state.restore()
    ema = state.curve[-1][1] if state.curve else None
    while state.step < steps:
        if clock.expired():
            log(f"critic {name}: time cap reached after {state.step} steps")
            break
        set_lr(optimizer, lr_at(state.step, clock.progress(state.step, steps), peak_lr, warmup=min(50, steps // 10)))
        loss, extras = step_fn(state.step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if state.step % 20 == 0:
            state.curve.append([state.step, round(ema, 5), round(clock.elapsed, 1), *[round(v, 4) for v in extras]])
            log(
                f"critic {name} step {state.step} loss {loss.item():.4f} (ema {ema:.4f}) "
                f"{' '.join(f'{v:.3f}' for v in extras)} {clock.elapsed:.0f}s"
            )
        state.step += 1
        state.save_if_due()
    state.save_if_due(force=True)
    return {
        "steps": state.step,
        "seconds": round(clock.elapsed, 1),
        "cpu_seconds": round(state.cpu_total(), 1),
        "loss_ema": round(ema or float("nan"), 4),
        "curve": state.curve,
    }


def _step_seed(seed: int, step: int) -> int:
    """The seed of one step's own draws (attacks, questions): derived from the step, so a resumed run draws exactly
    what an uninterrupted one would, with nothing to save."""
    return seed * 1_000_003 + step


def train_critic(config: CriticTrainConfig, root: Path, device: str = "auto") -> tuple[object, dict]:
    # The T2V gate needs the generator and the round trips its VAE: fail now, not after the training.
    if config.t2v_eval > 0:
        toy_generator_path(root)
    elif config.vae_share > 0:
        toy_vae_path(root)
    dev = resolve_device(device)
    setup(config.seed, dev, config.threads)
    model, tokenizer = build_critic_model(config.seed)
    if config.init_from:
        from transformers import PreTrainedTokenizerFast, Qwen2VLForConditionalGeneration

        trained = Qwen2VLForConditionalGeneration.from_pretrained(config.init_from, dtype=torch.float32)
        model.load_state_dict(trained.state_dict())
        # Its embeddings were trained on its tokenizer's ids: they must be this tokenizer's.
        if PreTrainedTokenizerFast.from_pretrained(config.init_from).get_vocab() != tokenizer.get_vocab():
            raise InputError(
                f"init_from={config.init_from}: the critic's tokenizer is not the toy critic's (the question "
                "templates' words changed since it was trained); train a critic from scratch instead"
            )
    model.to(dev)
    critic = make_critic(model, tokenizer, config.min_pixels)
    vae = load_vae(root)
    vision_steps, answer_steps, words_steps = config.phase_steps()
    if config.init_from:
        vision_steps = 0
    minutes = (config.minutes / 3, 2 * config.minutes / 3) if config.minutes > 0 else (0.0, 0.0)

    # Phase 1: the vision tower learns the cell targets.
    visual = model.model.visual
    heads = torch.nn.Linear(TEXT_ARCH["hidden_size"], sum(CELL_HEADS.values())).to(dev)
    videos = Videos(config.seed, vae, config.vae_share, config.empty_share)
    visual.requires_grad_(True).train()
    accuracy_names = list(CELL_HEADS)

    def vision_step(step: int):
        batch = videos.draw(config.videos_per_step)
        loss, accuracy = vision_loss(critic, heads, batch)
        if config.adversarial_eps > 0:
            noise = torch.Generator().manual_seed(_step_seed(config.seed, step))
            attacked = adversarial_frames(critic, heads, batch, config.adversarial_eps, noise)
            loss = loss + vision_loss(critic, heads, batch, attacked)[0]
        return loss, [accuracy.get(n, float("nan")) for n in accuracy_names]

    params = list(visual.parameters()) + list(heads.parameters())
    vision = _run_phase(
        "vision",
        config,
        root,
        {"visual": visual, "heads": heads},
        videos,
        params,
        vision_steps,
        config.vision_lr,
        minutes[0],
        vision_step,
    )
    vision["curve_columns"] = ["step", "loss_ema", "seconds", *[f"acc_{n}" for n in accuracy_names]]
    visual.requires_grad_(False).eval()

    # Phase 2: the language model learns to answer from the frozen tokens.
    language = [p for n, p in model.named_parameters() if not n.startswith("model.visual.")]
    for p in language:
        p.requires_grad_(True)
    model.model.language_model.train()
    videos = Videos(config.seed + 1, vae, config.vae_share, config.empty_share)

    def answer_step(step: int):
        questions = random.Random(_step_seed(config.seed, step))
        return answer_loss(critic, videos.draw(config.videos_per_step), config.questions_per_video, questions), []

    answer = _run_phase(
        "answer",
        config,
        root,
        {"model": model},
        videos,
        language,
        answer_steps,
        config.answer_lr,
        minutes[1],
        answer_step,
    )
    answer["curve_columns"] = ["step", "loss_ema", "seconds"]

    # Phase 3: the language model learns to answer in words and explain, beside the closed answers.
    videos = Videos(config.seed + 2, vae, config.vae_share, config.empty_share)

    def words_step(step: int):
        draw = random.Random(_step_seed(config.seed, step))
        batch = videos.draw(config.videos_per_step)
        said = words_loss(critic, batch, config.questions_per_video, draw)
        closed = answer_loss(critic, batch, config.questions_per_video, draw)
        return said + config.words_answer_weight * closed, [said.item(), closed.item()]

    words = _run_phase(
        "words",
        config,
        root,
        {"model": model},
        videos,
        language,
        words_steps,
        config.words_lr,
        config.words_minutes,
        words_step,
    )
    words["curve_columns"] = ["step", "loss_ema", "seconds", "words_ce", "answer_loss"]
    model.requires_grad_(False).eval()

    words_eval = config.words_eval if words["steps"] > 0 else 0
    metrics = evaluate_critic(critic, root, config.eval_renders, config.eval_seed, config.t2v_eval, words_eval)
    log(f"critic gates {metrics['gates']}")
    out = Path(root) / CRITIC_DIR
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    phases = {"vision": vision, "answer": answer, "words": words}
    for name in phases:
        (Path(root) / TRAIN_STATE_DIR / f"critic-{name}.pt").unlink(missing_ok=True)
    summary = {
        "steps": sum(phase["steps"] for phase in phases.values()),
        "train_seconds": round(sum(phase["seconds"] for phase in phases.values()), 1),
        "cpu_seconds": round(sum(phase["cpu_seconds"] for phase in phases.values()), 1),
        "phases": phases,
        "parameters": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        "config": asdict(config),
        "critic_config": {
            "family": "qwen2_vl",
            "frames_as": "video",
            "max_pixels": 224 * 224,
            "min_pixels": config.min_pixels,
        },  # fmt: skip
        "frames": {"policy": "all"},
        "labels": "scene truth only (drf.toyworld.truth): renders of the train split, clean, degraded ("
        + ", ".join(DEGRADATIONS[1:])
        + f") and {config.vae_share:.0%} toy-VAE round trips; questions of the own "
        "prompt and of minimally changed scenes, balanced per family; dense answers and explanations in words from "
        "the scene; the oracle labels nothing",
    }
    return model, summary
