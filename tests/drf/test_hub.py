"""Model locations are checked before any loader runs: one line, naming the config key, at once."""

import pytest

from drf.errors import ModelLoadError
from drf.models.wan import WanGenerator


def test_hub_id_while_offline_fails_at_once_saying_the_model_must_be_local(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"model.path 'Wan-AI/Wan2.1-T2V-1.3B-Diffusers' is a hub id, but the hub "
                                             r"is offline here"):  # fmt: skip
        WanGenerator.from_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", height=32, width=32, num_frames=9)


def test_hub_id_without_network_fails_at_once(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(ModelLoadError, match=r"is a hub id, but the hub cannot be reached from here; the model must"):
        WanGenerator.from_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", height=32, width=32, num_frames=9)
