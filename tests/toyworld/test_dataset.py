"""Datasets: seeded, and a saved dataset loads back identical."""

import pytest
import torch

from drf.toyworld.dataset import build_dataset, load_dataset, save_dataset
from drf.toyworld.grammar import prompt_for

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dataset_round_trips_through_npz(tmp_path):
    data = build_dataset(3, seed=5, num_frames=9, height=32, width=32, supersample=1)
    assert data.video.shape == (3, 9, 3, 32, 32) and data.video.dtype == torch.uint8
    assert data.prompts == [prompt_for(s) for s in data.scenes]
    loaded = load_dataset(save_dataset(data, tmp_path / "toy.npz"))
    assert torch.equal(loaded.video, data.video) and torch.equal(loaded.depth, data.depth)
    assert torch.equal(loaded.c2w, data.c2w) and loaded.scenes == data.scenes and loaded.prompts == data.prompts


def test_same_seed_same_dataset():
    a = build_dataset(2, seed=9, num_frames=5, height=16, width=16, supersample=1)
    b = build_dataset(2, seed=9, num_frames=5, height=16, width=16, supersample=1)
    assert torch.equal(a.video, b.video) and a.prompts == b.prompts
