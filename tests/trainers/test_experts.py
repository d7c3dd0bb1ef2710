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


def test_expert_of_steps_matches_the_routing_of_a_stock_pipeline_at_a_boundary_within_rounding():
    """diffusers routes with ``t >= boundary_ratio * 1000`` where t is the scheduler's float32 timestep, so the
    comparison happens in float32; a boundary just above a timestep in float64 but equal to it in float32 is where
    a float64 comparison would name the other expert."""
    from diffusers import WanPipeline

    gen = tiny_generator(name=EXPERTS, fresh=True)
    t1 = gen.scheduler(4).timesteps[1]  # 857.69..., between the first step and Wan's 875
    ratio = float(torch.nextafter(t1.double(), torch.tensor(2000.0, dtype=torch.float64))) / 1000
    assert ratio * 1000 > float(t1) and torch.tensor(ratio * 1000, dtype=torch.float32) == t1
    gen.pipe.register_to_config(boundary_ratio=ratio)

    stock = gen.pipe
    pipe = WanPipeline(**{k: getattr(stock, k) for k in stock.components}, boundary_ratio=ratio)
    pipe.set_progress_bar_config(disable=True)
    ran: dict[float, set[str]] = {}
    for name in ("transformer", "transformer_2"):
        def record(module, args, kwargs, name=name):
            ran.setdefault(float(kwargs["timestep"].flatten()[0]), set()).add(name)
        getattr(pipe, name).register_forward_pre_hook(record, with_kwargs=True)
    with torch.no_grad():
        pipe(prompt="a red cube", num_inference_steps=4, guidance_scale=1.0, output_type="latent", **SIZE)
    routed = [ran[t].pop() for t in sorted(ran, reverse=True)]
    assert routed[:2] == ["transformer", "transformer"]  # the boundary falls on step 1: the high-noise expert's
    assert gen.expert_of_steps(4) == routed


def grpo_experts_trainer(tmp_path, *overrides: str):
    from tests.trainers.conftest import tiny_grpo_cfg
    from trainers.grpo import GRPOTrainer

    cfg = tiny_grpo_cfg(tmp_path, f"model.tiny={EXPERTS}", "grpo.export=false", "logging.sample_every=0",
                        "rewards=[{name: critic}]", *overrides)  # fmt: skip
    return GRPOTrainer(cfg, generator=tiny_generator(name=EXPERTS, fresh=True), critic=shared_critic())


def nft_experts_trainer(tmp_path, *overrides: str):
    from drf.config import load_config
    from tests.trainers.conftest import ROOT, TINY_NFT_CONFIG
    from trainers.nft import NFTRunConfig, NFTTrainer

    cfg = load_config(TINY_NFT_CONFIG, NFTRunConfig, [
        f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}", f"logging.output_dir={tmp_path}",
        "logging.report=false", f"model.tiny={EXPERTS}", "nft.export=false", "logging.sample_every=0",
        *overrides])  # fmt: skip
    return NFTTrainer(cfg, generator=tiny_generator(name=EXPERTS, fresh=True), critic=shared_critic())


ONE_EXPERT_RUNS = {
    # recipe -> settings per expert; the high-noise expert runs step 0 of 4 only, the low-noise one steps 1-3
    "drf": {"high_noise": ("sampling.grad_window.k=1",), "low_noise": ("sampling.grad_window.k=2",)},
    "grpo": {"high_noise": ("grpo.window_size=1",), "low_noise": ("grpo.window_size=2",)},
    "nft": {"high_noise": (), "low_noise": ()},
}


@pytest.mark.parametrize("expert", ["high_noise", "low_noise"])
@pytest.mark.parametrize("recipe", ["drf", "grpo", "nft"])
def test_one_chosen_expert_trains_in_every_recipe_and_every_draw_lands_on_it(tmp_path, recipe, expert):
    """Random windows (DRF random_k), SDE windows (GRPO, progressive: one step later each step) and NFT noise levels
    that reached the frozen expert left the loss without gradient and crashed backward."""
    build = {"drf": experts_trainer, "grpo": grpo_experts_trainer, "nft": nft_experts_trainer}[recipe]
    settings = (f"name={recipe}-{expert}", f"model.train_experts={expert}", f"{recipe}.steps=3",
                f"{recipe}.learning_rate=1e-2", *ONE_EXPERT_RUNS[recipe][expert])  # fmt: skip
    if recipe == "drf":
        settings += ("sampling.grad_window.kind=random_k",)
    trainer = build(tmp_path, *settings)
    pipe_name = {"high_noise": "transformer", "low_noise": "transformer_2"}[expert]
    other = {"transformer": "transformer_2", "transformer_2": "transformer"}[pipe_name]
    owned = steps_of(pipe_name)
    assert trainer.expert_steps == owned and trainer.experts == [pipe_name]
    banner = "\n".join(trainer._describe())
    assert f"experts: {pipe_name} trains (model.train_experts {expert}), {other} stays frozen" in banner
    trainer.train()
    assert any(b.abs().max() > 0 for b in lora_b(getattr(trainer.generator.pipe, pipe_name)))
    assert not getattr(getattr(trainer.generator.pipe, other), "peft_config", None)
    if recipe == "drf":
        from drf.grad_window import window_from_config

        draws = [window_from_config(trainer.cfg.sampling.grad_window, 4, i, trainer.expert_steps).steps
                 for i in range(50)]  # fmt: skip
        assert set().union(*draws) == set(owned)
    elif recipe == "grpo":
        windows = [trainer.window(step, trainer.window_span()).steps for step in range(6)]
        assert set().union(*windows) <= set(owned) and all(len(w) == trainer.cfg.grpo.window_size for w in windows)
    else:
        rng = torch.Generator().manual_seed(0)
        _, timesteps = trainer.noise_levels(rng, 50)
        assert {trainer.generator.expert_at(float(t)) for t in timesteps.flatten()} == {pipe_name}


def test_a_window_larger_than_the_chosen_experts_steps_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"sampling.grad_window.k is 2 but the trained expert \(transformer\) runs "
                       r"only sampling steps \[0\]; set k <= 1"):  # fmt: skip
        experts_trainer(tmp_path, "name=k2", "model.train_experts=high_noise", "sampling.grad_window.kind=random_k",
                        "sampling.grad_window.k=2")  # fmt: skip
    with pytest.raises(ConfigError, match=r"grpo.window_size is 2 but the trained expert \(transformer\) runs only "
                       r"SDE-able steps \[0\]; set grpo.window_size <= 1"):  # fmt: skip
        grpo_experts_trainer(tmp_path, "name=w2", "model.train_experts=high_noise", "grpo.window_size=2")
