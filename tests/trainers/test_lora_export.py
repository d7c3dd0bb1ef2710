"""The exported LoRA loads into a stock diffusers WanPipeline and reproduces our generator with the LoRA active."""

from __future__ import annotations

import copy

import pytest
import torch

from drf.errors import ModelLoadError
from drf.grad_window import GradWindow
from drf.models.registry import load_generator
from drf.sampling import sample
from tests.fixtures.wan import SIZE, _components, tiny_generator
from trainers.config import TrainerConfig
from trainers.weights import setup_trainable


def test_exported_lora_loads_with_load_lora_weights(tmp_path):
    from diffusers import WanPipeline

    gen = tiny_generator(fresh=True)
    # alpha != r checks that the scale travels with the file (adapter metadata), not just the weights.
    cfg = TrainerConfig(
        lora_rank=4, lora_alpha=8.0, lora_target_modules=["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj"]
    )
    params = setup_trainable(gen.trainable_module(), cfg, "drf")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in params:  # a "trained" adapter: B is no longer zero
            p.add_(0.2 * torch.randn_like(p))
    gen.save_lora(tmp_path / "lora")

    pipe = WanPipeline(**copy.deepcopy(_components("wan-tiny", 0)))
    pipe.scheduler = type(gen.pipe.scheduler).from_config(gen.pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(tmp_path / "lora")

    prompt, steps, guidance = "a red cube on a checkered floor", 4, 4.0
    latents = gen.init_latents(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = sample(
            gen, gen.encode_prompts([prompt], guidance), GradWindow.none(steps), latents=latents.clone()
        ).latents
        theirs = pipe(
            prompt=prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            latents=latents.clone(),
            output_type="latent",
            max_sequence_length=SIZE["max_sequence_length"],
            height=SIZE["height"],
            width=SIZE["width"],
            num_frames=SIZE["num_frames"],
        ).frames
        base = sample(
            tiny_generator(), gen.encode_prompts([prompt], guidance), GradWindow.none(steps), latents=latents.clone()
        ).latents
    assert (ours - base).abs().max() > 1e-2  # the adapter changes the output, so the comparison below means something
    # Same float32 ops in the same order, up to how peft and diffusers group the LoRA scaling: 1e-5 absolute.
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)

    reloaded = tiny_generator(fresh=True)
    reloaded.load_lora(tmp_path / "lora")  # the generator's own door back in
    with torch.no_grad():
        again = sample(
            reloaded, reloaded.encode_prompts([prompt], guidance), GradWindow.none(steps), latents=latents.clone()
        ).latents
    torch.testing.assert_close(again, ours, atol=1e-5, rtol=0)


def test_load_lora_names_a_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        tiny_generator(fresh=True).load_lora(tmp_path / "nowhere")


def _trained_lora(out_dir, rank: int = 4):
    """A "trained" LoRA (B no longer zero) on the shared tiny modules, saved as a run saves it."""
    gen = tiny_generator(fresh=True)
    cfg = TrainerConfig(
        lora_rank=rank, lora_alpha=float(rank), lora_target_modules=["to_q", "to_k", "to_v", "to_out.0"]
    )
    params = setup_trainable(gen.trainable_module(), cfg, "drf")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in params:
            p.add_(0.2 * torch.randn_like(p))
    gen.save_lora(out_dir)
    return out_dir


def test_drf_sample_with_model_lora_draws_what_stock_diffusers_draws(tmp_path):
    from diffusers import WanPipeline

    from drf.config import load_config
    from drf.sample import SampleRunConfig, sample_videos
    from drf.video_io import read_video, write_video

    lora = _trained_lora(tmp_path / "lora")
    model_dir = tmp_path / "model"
    tiny_generator(fresh=True).to_pipeline().save_pretrained(model_dir)
    prompt, steps, guidance = "a red cube on a checkered floor", 4, 4.0
    overrides = [f"model.path={model_dir}", f"model.lora={lora}", f"prompts=[{prompt!r}]", "seed=3",
                 f"sampling.num_steps={steps}", f"sampling.guidance_scale={guidance}", "model.shift=3.0",
                 *(f"model.{k}={v}" for k, v in SIZE.items())]  # fmt: skip
    cfg = load_config(None, SampleRunConfig, overrides)
    ours = read_video(sample_videos(cfg, tmp_path / "ours")[0])

    pipe = WanPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(lora)
    latents = load_generator(cfg.model).init_latents(1, torch.Generator().manual_seed(3))  # sample_videos' noise
    with torch.no_grad():
        frames = pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, latents=latents,
                      output_type="pt", max_sequence_length=SIZE["max_sequence_length"], height=SIZE["height"],
                      width=SIZE["width"], num_frames=SIZE["num_frames"]).frames[0]  # fmt: skip
    theirs = read_video(write_video(tmp_path / "theirs.gif", frames.float()))
    without = read_video(sample_videos(load_config(None, SampleRunConfig, overrides[:1] + overrides[2:]),
                                       tmp_path / "base")[0])  # fmt: skip
    assert (ours - without).abs().mean() > 0.01  # the LoRA changes the frames, so the comparison means something
    assert (ours - theirs).abs().max() <= 2 / 255


def test_a_run_starts_from_model_lora(tmp_path, run_cfg):
    from tests.trainers.conftest import make_trainer

    lora = _trained_lora(tmp_path / "lora")
    trainer = make_trainer(run_cfg("name=continued", f"model.lora={lora}", "drf.lora_rank=4", "drf.lora_alpha=4",
                                   "drf.lora_target_modules=[to_q,to_k,to_v,to_out.0]"))  # fmt: skip
    reference = tiny_generator(fresh=True)
    reference.load_lora(lora)
    prompt = "a red cube on a checkered floor"
    latents = reference.init_latents(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        started = sample(trainer.generator, trainer.generator.encode_prompts([prompt], 4.0), GradWindow.none(4),
                         latents=latents.clone()).latents  # fmt: skip
        loaded = sample(reference, reference.encode_prompts([prompt], 4.0), GradWindow.none(4),
                        latents=latents.clone()).latents  # fmt: skip
    torch.testing.assert_close(started, loaded, atol=1e-5, rtol=0)


def test_model_lora_of_another_rank_is_one_line_naming_the_key(tmp_path, run_cfg):
    from drf.errors import ConfigError
    from tests.trainers.conftest import make_trainer

    lora = _trained_lora(tmp_path / "lora", rank=4)
    with pytest.raises(ConfigError, match=r"model.lora .*shape .*set lora_rank and lora_target_modules") as err:
        make_trainer(run_cfg("name=mismatch", f"model.lora={lora}", "drf.lora_rank=8",
                             "drf.lora_target_modules=[to_q,to_k,to_v,to_out.0]"))  # fmt: skip
    assert "\n" not in str(err.value)
