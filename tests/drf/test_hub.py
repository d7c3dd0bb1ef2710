"""Model locations are checked before any loader runs: one line, naming the config key, at once."""

import pytest

from drf.errors import ModelLoadError
from drf.models.wan import WanGenerator


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, whatever the machine's own holds."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    return tmp_path


def test_hub_id_while_offline_and_not_cached_fails_at_once_naming_the_cache(monkeypatch, empty_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"model.path 'Wan-AI/Wan2.1-T2V-1.3B-Diffusers' is a hub id, but the hub "
                                             rf"is offline here \(HF_HUB_OFFLINE\) and it is not in the local Hugging "
                                             rf"Face cache {empty_cache}; fill the cache"):  # fmt: skip
        WanGenerator.from_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", height=32, width=32, num_frames=9)


def test_hub_id_without_network_and_not_cached_fails_at_once(monkeypatch, empty_cache):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(ModelLoadError, match=r"is a hub id, but the hub cannot be reached from here and it is not in "
                                             r"the local Hugging Face cache"):  # fmt: skip
        WanGenerator.from_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", height=32, width=32, num_frames=9)
