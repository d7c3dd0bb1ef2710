"""``load_generator``: the door to a video model is chosen by ``model.family``."""

import pytest

from drf.errors import ConfigError
from drf.models.registry import GENERATORS, ModelConfig, load_generator, register_generator
from drf.models.wan import WanGenerator


def test_wan_family_loads_the_wan_adapter():
    generator = load_generator(ModelConfig(tiny="wan-tiny"))
    assert isinstance(generator, WanGenerator) and generator.num_frames == ModelConfig().num_frames


def test_unknown_family_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"family is 'cogvideo'; expected one of wan"):
        load_generator(ModelConfig(family="cogvideo", tiny="wan-tiny"))


def test_a_registered_family_is_built_by_its_own_function():
    calls = []
    register_generator("fake", lambda config, device: calls.append((config.family, device)) or "generator")
    try:
        assert load_generator(ModelConfig(family="fake", tiny="wan-tiny"), device="cpu") == "generator"
    finally:
        del GENERATORS["fake"]
    assert calls == [("fake", "cpu")]
