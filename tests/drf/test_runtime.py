"""How a drf process uses the CPU: passive OpenMP waiting from the CLI, and runtime.threads."""

import os

import pytest
import torch

from drf.cli import main
from drf.errors import ConfigError
from drf.runtime import RuntimeConfig, default_threads


def test_default_threads_honours_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == len(os.sched_getaffinity(0))


def test_threads_setting_is_applied_and_checked():
    before = torch.get_num_threads()
    try:
        assert RuntimeConfig(threads=2).apply() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        RuntimeConfig(threads=-1).validate()


def test_cli_asks_for_passive_waiting_unless_the_user_chose(monkeypatch, capsys):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    main([])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    main([])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_libraries_are_quiet_unless_verbose_and_a_users_setting_wins(monkeypatch):
    for name in ("TQDM_DISABLE", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        monkeypatch.setenv(name, "")  # recorded, so that the test's own settings are undone afterwards
        monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    main(["--verbose"])
    assert "TQDM_DISABLE" not in os.environ
    main([])
    assert os.environ["TQDM_DISABLE"] == "1" and os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
