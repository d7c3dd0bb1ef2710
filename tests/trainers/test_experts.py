"""Wan 2.2's two experts: the expert that runs the trained steps learns, each gets its own LoRA, a stock WanPipeline
reproduces the run with both exported LoRAs, resume is exact, and impossible choices are one-line errors."""

from __future__ import annotations

import pytest
import torch

from drf.errors import ConfigError
from drf.models.wan import LORA_WEIGHTS, LORA_WEIGHTS_2
from drf.sampling import GradWindow, sample
from tests.fixtures.wan import SIZE, tiny_generator
from tests.trainers.conftest import shared_critic, tiny_cfg, wrap_critic
from tests.trainers.test_resume import Interrupt, StopAfter, _state
from trainers.drf import DRFTrainer

EXPERTS = "wan-tiny-experts"


def experts_trainer(tmp_path, *overrides: str, resume: str | None = None) -> DRFTrainer:
    cfg = tiny_cfg(tmp_path, f"model.tiny={EXPERTS}", "drf.export=false", "logging.sample_every=0",
                   "drf.lr_schedule=constant", *overrides)
    generator = tiny_generator(name=EXPERTS, fresh=True)
    return DRFTrainer(cfg, resume, generator=generator, critic=shared_critic())


def lora_b(module) -> list[torch.Tensor]:
    return [p for n, p in module.named_parameters() if "lora_B" in n]


def steps_of(expert: str) -> list[int]:
    return [i for i, name in enumerate(tiny_generator(name=EXPERTS).expert_of_steps(4)) if name == expert]


def test_the_steps_the_window_covers_decide_which_expert_trains(tmp_path):
    assert steps_of("transformer") and steps_of("transformer_2")  # 4 steps: both experts run some
    trainer = experts_trainer(tmp_path, "name=last", "sampling.grad_window.kind=last_k", "sampling.grad_window.k=1",
                              "drf.steps=1", "drf.learning_rate=1e-2")  # fmt: skip
    pipe = trainer.generator.pipe
    assert list(trainer.transformer.keys()) == ["transformer_2"]  # the last step is the low-noise expert's
    assert not getattr(pipe.transformer, "peft_config", None) and not any(p.requires_grad for p in pipe.transformer.parameters())
    trainer.train()
    assert any(b.abs().max() > 0 for b in lora_b(pipe.transformer_2))


def test_a_window_over_both_experts_trains_both_and_exports_what_stock_diffusers_reproduces(tmp_path):
    from diffusers import WanPipeline

    window = [steps_of("transformer")[-1], steps_of("transformer_2")[0]]
    trainer = experts_trainer(tmp_path, "name=both", "sampling.grad_window.kind=steps",
                              f"sampling.grad_window.steps={window}", "drf.steps=2", "drf.learning_rate=1e-2",
                              "drf.export=true", "drf.ema=false")  # fmt: skip
    gen = trainer.generator
    assert list(trainer.transformer.keys()) == ["transformer", "transformer_2"]
    trainer.train()
    assert all(any(b.abs().max() > 0 for b in lora_b(m)) for m in (gen.pipe.transformer, gen.pipe.transformer_2))
    lora = trainer.run_dir / "lora"
    assert (lora / LORA_WEIGHTS).is_file() and (lora / LORA_WEIGHTS_2).is_file()

    stock = tiny_generator(name=EXPERTS, fresh=True).pipe
    pipe = WanPipeline(**{k: getattr(stock, k) for k in stock.components}, boundary_ratio=stock.config.boundary_ratio)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(lora)
    pipe.load_lora_weights(lora, weight_name=LORA_WEIGHTS_2, load_into_transformer_2=True)
    prompt, guidance = "a red cube on a checkered floor", 4.0
    latents = gen.init_latents(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = sample(gen, gen.encode_prompts([prompt], guidance), GradWindow.none(4), latents=latents.clone()).latents
        theirs = pipe(prompt=prompt, num_inference_steps=4, guidance_scale=guidance, latents=latents.clone(),
                      output_type="latent", **SIZE).frames  # fmt: skip
        base = sample(tiny_generator(name=EXPERTS), gen.encode_prompts([prompt], guidance), GradWindow.none(4),
                      latents=latents.clone()).latents  # fmt: skip
    assert (ours - base).abs().max() > 1e-3  # both adapters changed the output
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)

    reloaded = tiny_generator(name=EXPERTS, fresh=True)
    reloaded.load_lora(lora)  # drf's own door: both files
    with torch.no_grad():
        again = sample(reloaded, reloaded.encode_prompts([prompt], guidance), GradWindow.none(4),
                       latents=latents.clone()).latents  # fmt: skip
    torch.testing.assert_close(again, ours, atol=1e-5, rtol=0)


def test_two_experts_resume_bit_for_bit(tmp_path):
    settings = ("sampling.grad_window.kind=random_k", "sampling.grad_window.k=2", "drf.steps=4",
                "drf.checkpoint_every=2", "drf.keep_last=5")  # fmt: skip
    straight = experts_trainer(tmp_path, "name=straight", *settings)
    straight.train()
    first = experts_trainer(tmp_path, "name=resumed", *settings)
    wrap_critic(first, lambda critic: StopAfter(critic, calls=3 * 2))  # dies inside step 4, after checkpoint step-2
    with pytest.raises(Interrupt):
        first.train()
    second = experts_trainer(tmp_path, "name=resumed", *settings, resume="latest")
    assert second.step == 2
    second.train()
    expected, got = _state(straight), _state(second)
    assert expected.keys() == got.keys() and any(k.startswith("transformer_2.") for k in expected)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_a_choice_that_cannot_train_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"train_experts is 'high_noise' but the steps this recipe trains run on the "
                       r"low_noise expert only"):  # fmt: skip
        experts_trainer(tmp_path, "name=frozen", "model.train_experts=high_noise", "sampling.grad_window.kind=last_k",
                        "sampling.grad_window.k=1")  # fmt: skip
    with pytest.raises(ConfigError, match=r"train_experts is 'both' but this model has one transformer"):
        DRFTrainer(tiny_cfg(tmp_path, "name=single", "model.train_experts=both"), generator=tiny_generator(fresh=True),
                   critic=shared_critic())  # fmt: skip


def test_nft_trains_the_experts_of_its_noise_levels(tmp_path):
    from drf.config import load_config
    from tests.trainers.conftest import ROOT, TINY_NFT_CONFIG
    from trainers.nft import NFTRunConfig, NFTTrainer

    def experts(t_max: float) -> list[str]:
        cfg = load_config(TINY_NFT_CONFIG, NFTRunConfig, [
            f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}", f"logging.output_dir={tmp_path}",
            f"name=nft{t_max}", "nft.timesteps=uniform", f"nft.t_max={t_max}", "logging.report=false"])  # fmt: skip
        trainer = NFTTrainer(cfg, generator=tiny_generator(name=EXPERTS, fresh=True), critic=shared_critic())
        return list(trainer.transformer.keys())

    assert experts(0.95) == ["transformer", "transformer_2"]
    assert experts(0.5) == ["transformer_2"]


def test_a_run_starts_from_both_experts_lora(tmp_path):
    window = [steps_of("transformer")[-1], steps_of("transformer_2")[0]]
    settings = ("sampling.grad_window.kind=steps", f"sampling.grad_window.steps={window}", "drf.learning_rate=1e-2")
    first = experts_trainer(tmp_path, "name=first", *settings, "drf.steps=1", "drf.export=true", "drf.ema=false")
    first.train()
    second = experts_trainer(tmp_path, "name=second", *settings, f"model.lora={first.run_dir / 'lora'}")
    trained, loaded = _state(first), _state(second)
    assert trained.keys() == loaded.keys()
    for name in trained:
        assert torch.equal(trained[name], loaded[name]), name
    single = tiny_cfg(tmp_path, "name=third", f"model.tiny={EXPERTS}", *settings, f"model.lora={first.run_dir / 'lora'}",
                      "sampling.grad_window.steps=[3]")  # fmt: skip
    third = DRFTrainer(single, generator=tiny_generator(name=EXPERTS, fresh=True), critic=shared_critic())
    assert list(third.transformer.keys()) == ["transformer_2"]  # the low-noise expert's file only
    for name, value in _state(third).items():
        assert torch.equal(value, trained[name]), name
