"""A run stopped before its first checkpoint was complete restarts: ``drf train`` discards the unfinished start in
one line and starts over, ``--resume latest`` says there is nothing to resume and how to start. Real processes: a
Ctrl-C (SIGINT) from outside, and a SIGKILL inside the first checkpoint's write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from drf.checkpoint import list_checkpoints
from tests.trainers.conftest import ROOT, TINY_CONFIG


def train_command(tmp_path, *overrides: str, resume: bool = False) -> list[str]:
    """``drf train configs/tiny_drf.yaml`` as the issue's user ran it, writing under ``tmp_path``."""
    sets = [f"prompts={ROOT / 'configs' / 'prompts' / 'tiny_eval.jsonl'}", f"logging.output_dir={tmp_path}",
            "name=x", "drf.checkpoint_every=2", "drf.export=false", "logging.report=false", *overrides]  # fmt: skip
    args = ["train", str(TINY_CONFIG), *[part for s in sets for part in ("--set", s)]]
    return args + (["--resume", "latest"] if resume else [])


def drf(args: list[str], prelude: str = "") -> list[str]:
    """The ``drf`` command line in a fresh interpreter, after ``prelude`` (a patch that injects a failure)."""
    return [sys.executable, "-c", f"import sys\n{prelude}\nfrom drf.cli import main\nsys.exit(main({args!r}))"]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def resume_and_restart(tmp_path) -> None:
    """Both commands a stranded user tries: ``--resume latest`` refuses in one line naming the plain start; the plain
    start discards what is there, says so, and trains to a complete checkpoint."""
    run_dir = tmp_path / "x"
    resumed = run(drf(train_command(tmp_path, "drf.steps=6", resume=True)))
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    error = resumed.stderr.strip().splitlines()[-1]
    assert error.startswith("error: --resume latest: nothing to resume, no complete checkpoint in "), error
    assert "start the run with the same command without --resume" in error

    fresh = run(drf(train_command(tmp_path, "drf.steps=2", "logging.sample_every=0")))
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    notes = [line for line in fresh.stdout.splitlines() if "discarding it and starting over" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: {run_dir} holds a start that stopped before its first "
                                                   "complete checkpoint (it contains: "), fresh.stdout  # fmt: skip
    assert [step for step, _ in list_checkpoints(run_dir)] == [2]
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]  # no half-written folder


def test_ctrl_c_before_the_first_checkpoint_leaves_a_run_that_restarts(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    metrics = tmp_path / "x" / "metrics.jsonl"
    # A shell's background job starts with SIGINT ignored, and a child inherits that: restore the default so Ctrl-C
    # reaches the run however the suite was started.
    process = subprocess.Popen(drf(train_command(tmp_path, "drf.steps=6")), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 240
    while not metrics.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metrics.exists(), "the run never started training"
    process.send_signal(signal.SIGINT)  # the step-0 evaluation and two steps stand between this and step-2
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert not list_checkpoints(tmp_path / "x")
    resume_and_restart(tmp_path)


def test_a_kill_inside_the_first_checkpoint_write_leaves_a_run_that_restarts(tmp_path):
    # SIGKILL the process when the first checkpoint has every file but its COMPLETE marker.
    prelude = (
        "import os, signal\n"
        "import drf.checkpoint as c\n"
        "write = c._write_text\n"
        "def write_or_die(path, text):\n"
        "    if path.name == c.COMPLETE_MARKER:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    write(path, text)\n"
        "c._write_text = write_or_die\n"
    )
    killed = run(drf(train_command(tmp_path, "drf.steps=6", "logging.sample_every=0"), prelude))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    leftovers = [p.name for p in (tmp_path / "x" / "checkpoints").iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-step-2-"), leftovers
    resume_and_restart(tmp_path)
