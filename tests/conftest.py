"""Suite-wide settings: never touch the network, fixed seeds, one torch thread.

The suite's tensors are small: with two OpenMP threads per process they spin against each other and anything else
on a 2-core machine (measured 4.2 s vs 0.16 s per oracle video under load), so one thread is faster as well as steady.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # also what runtime.threads = 0 resolves to in the suite's runs
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI sets it (drf.runtime)

import pytest  # noqa: E402
import torch  # noqa: E402

from drf.cli import load_commands  # noqa: E402

torch.set_num_threads(1)
load_commands()  # the applications register the toy world's judge and the HTML report, as the CLI does


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
