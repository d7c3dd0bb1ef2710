"""Shared fixtures for the toy-world tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread: these tests run many small tensor ops, and on a busy 2-core machine a second OpenMP
    thread makes them an order of magnitude slower (spin-waiting), not faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
