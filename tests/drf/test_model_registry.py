"""``load_generator``: the door to a video model is chosen by ``model.family``, and the family's own rules (frames,
sizes, schedulers, tiny presets, experts) decide which ``model:`` settings are valid."""

import dataclasses

import pytest

from drf.errors import ConfigError
from drf.models.base import Family
from drf.models.ltx import LTXGenerator
from drf.models.registry import FAMILIES, ModelConfig, load_generator, register_family
from drf.models.wan import WanGenerator


def test_wan_family_loads_the_wan_adapter():
    generator = load_generator(ModelConfig(tiny="wan-tiny"))
    assert isinstance(generator, WanGenerator) and generator.num_frames == ModelConfig().num_frames


def test_ltx_family_loads_the_ltx_adapter():
    generator = load_generator(ModelConfig(family="ltx", tiny="ltx-tiny", num_frames=17, height=32, width=64))
    assert isinstance(generator, LTXGenerator)
    assert (generator.latent_layout.temporal_scale, generator.latent_layout.spatial_scale) == (8, 32)


def test_unknown_family_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"family is 'cogvideo'; expected one of ltx, wan"):
        load_generator(ModelConfig(family="cogvideo", tiny="wan-tiny"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(family="wan", num_frames=8), r"num_frames must be 4n\+1 \(got 8\); try 9"),
        (dict(family="wan", height=40), r"height must be a multiple of 16 \(got 40\); try 32 or 48"),
        (dict(family="ltx", num_frames=9 + 4), r"num_frames must be 8n\+1 \(got 13\); try 9 or 17"),
        (dict(family="ltx", width=48), r"width must be a multiple of 32 \(got 48\); try 32 or 64"),
        (dict(family="ltx", tiny="wan-tiny"), r"tiny is 'wan-tiny'; the ltx presets are ltx-tiny"),
        (dict(family="wan", tiny="ltx-tiny"), r"tiny is 'ltx-tiny'; the wan presets are .*wan-tiny"),
        (dict(family="ltx", train_experts="low_noise"), r"train_experts is 'low_noise'; ltx takes auto"),
        (dict(family="ltx", decode_checkpointing="segments"), r"decode_checkpointing is 'segments'; ltx takes frames"),
    ],
)
def test_each_family_checks_a_config_by_its_own_rules(settings, message):
    tiny = settings.pop("tiny", f"{settings['family']}-tiny")
    size = dict(num_frames=17, height=32, width=32)
    with pytest.raises(ConfigError, match=message):
        ModelConfig(tiny=tiny, **{**size, **settings}).validate()


def test_sizes_valid_for_wan_are_not_all_valid_for_ltx():
    ModelConfig(family="wan", tiny="wan-tiny", num_frames=13, height=48, width=48).validate()
    with pytest.raises(ConfigError, match="num_frames must be 8n"):
        ModelConfig(family="ltx", tiny="ltx-tiny", num_frames=13, height=64, width=64).validate()


def test_a_registered_family_is_built_by_its_own_function():
    calls = []
    fake = dataclasses.replace(
        FAMILIES["wan"], name="fake", build=lambda config, device: calls.append((config.family, device)) or "generator"
    )
    register_family(fake)
    try:
        assert load_generator(ModelConfig(family="fake", tiny="wan-tiny"), device="cpu") == "generator"
    finally:
        del FAMILIES["fake"]
    assert calls == [("fake", "cpu")]
    assert isinstance(fake, Family)
