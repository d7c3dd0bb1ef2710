"""The Wan adapter loads through the real ``from_pretrained`` path and rejects unusable inputs in one line."""

from __future__ import annotations

import pytest
import torch

from drf.errors import ConfigError, InputError, ModelLoadError
from drf.grad_window import GradWindow
from drf.models.tiny import save_tiny_wan
from drf.models.wan import WanGenerator
from drf.sampling import sample
from tests.fixtures.wan import SIZE, tiny_generator


def test_tiny_pipeline_round_trips_through_save_and_from_pretrained(tmp_path) -> None:
    save_tiny_wan(str(tmp_path / "wan"), "wan-tiny", seed=0)
    loaded = WanGenerator.from_pretrained(str(tmp_path / "wan"), scheduler="euler", shift=3.0, **SIZE)
    built = tiny_generator("euler", 3.0)
    for a, b in zip(loaded.pipe.transformer.state_dict().values(), built.pipe.transformer.state_dict().values()):
        assert torch.equal(a, b)
    prompts = ["a red cube"]
    assert loaded.pipe.tokenizer(prompts).input_ids == built.pipe.tokenizer(prompts).input_ids
    latents = built.init_latents(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = sample(loaded, loaded.encode_prompts(prompts, 3.0), GradWindow.none(3), latents=latents.clone())
        b = sample(built, built.encode_prompts(prompts, 3.0), GradWindow.none(3), latents=latents.clone())
    # Same weights; float32 rounding differs by at most a few ulps between the two module instances.
    torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=1e-5)


def test_missing_model_directory_names_the_path(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match=r"model.path '.*nowhere' does not exist; give a local model folder"):
        WanGenerator.from_pretrained(str(tmp_path / "nowhere"), **SIZE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no model_index.json"):
        WanGenerator.from_pretrained(str(tmp_path / "empty"), **SIZE)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (dict(num_frames=8), r"num_frames=8 is not 4n\+1, which this VAE needs; use 5 or 9"),
        (dict(num_frames=16), r"num_frames=16 is not 4n\+1, which this VAE needs; use 13 or 17"),
        (dict(height=40), r"height=40 must be a positive multiple of 16; use 32 or 48"),
        (dict(width=8), r"width=8 must be a positive multiple of 16; use 16"),
    ],
)
def test_video_sizes_the_model_cannot_take_are_rejected_with_a_fix(size, message) -> None:
    gen = tiny_generator()
    with pytest.raises(InputError, match=message):
        WanGenerator(gen.pipe, **{**SIZE, **size})


def test_xformers_backend_on_cpu_fails_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="xformers"):
        tiny_generator().set_attention_backend("xformers")


def test_unknown_scheduler_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown scheduler 'ddim'; choose one of euler, unipc"):
        WanGenerator(tiny_generator().pipe, scheduler="ddim", **SIZE)
