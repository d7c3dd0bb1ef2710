"""Checkpoints: exact round trip, crash safety, pruning, bit-identical resume, and readable errors."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import drf.checkpoint as ckpt
from drf.checkpoint import (
    NonFiniteGuard,
    TrainingDiverged,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
    trainable_state_dict,
)
from drf.errors import InputError

CONFIG = "trainer:\n  lr: 0.01\n"


class Toy(nn.Module):
    """A linear map with dropout and one frozen layer, so 'trainable only' means something."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.frozen(x)))


def make_run(seed: int = 0):
    torch.manual_seed(seed)
    model = Toy()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + 0.1 * s))
    return model, opt, sched


def train_steps(model, opt, sched, gen: torch.Generator, start: int, stop: int) -> None:
    """Data come from the global torch RNG, sampling noise from a named generator, dropout from the global RNG."""
    model.train()
    for _ in range(start, stop):
        x = torch.randn(8, 4)
        target = torch.randn(8, 2, generator=gen) + random.random() + float(np.random.rand())
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def save(run_dir, step, model, opt, sched, gen=None, keep_last=3, **kw):
    return save_checkpoint(
        run_dir,
        step,
        trainable=trainable_state_dict(model),
        optimizer=opt,
        lr_scheduler=sched,
        data_state={"epoch": 0, "index": step * 8},
        config_yaml=CONFIG,
        generators={"noise": gen} if gen is not None else None,
        keep_last=keep_last,
        **kw,
    )


def test_round_trip_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    model, opt, sched = make_run()
    gen = torch.Generator().manual_seed(7)
    train_steps(model, opt, sched, gen, 0, 3)
    path = save(tmp_path, 3, model, opt, sched, gen, metrics={"reward/total": 0.5}, extra={"note": "x"})
    after_save = (torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=gen))

    fresh, fresh_opt, fresh_sched = make_run(seed=123)
    fresh_gen = torch.Generator().manual_seed(999)
    state = load_checkpoint(
        path,
        trainable_module_or_setter=fresh,
        optimizer=fresh_opt,
        lr_scheduler=fresh_sched,
        generators={"noise": fresh_gen},
    )
    after_load = (torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=fresh_gen))

    assert torch.equal(after_save[0], after_load[0]) and torch.equal(after_save[3], after_load[3])
    assert after_save[1:3] == after_load[1:3]
    for (name, p), q in zip(model.head.named_parameters(), fresh.head.parameters()):
        assert torch.equal(p, q), name
    # The frozen layer is not part of a checkpoint: it stays as the fresh model built it.
    assert not torch.equal(model.frozen.weight, fresh.frozen.weight)
    for a, b in zip(opt.state.values(), fresh_opt.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    assert fresh_sched.state_dict()["last_epoch"] == 3 and fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert state["step"] == 3 and state["data_state"] == {"epoch": 0, "index": 24}
    assert state["metrics"] == {"reward/total": 0.5} and state["extra"] == {"note": "x"}
    assert state["config_yaml"] == CONFIG
    assert sorted(p.name for p in path.iterdir()) == [
        "COMPLETE",
        "config.yaml",
        "optimizer.pt",
        "rng.pt",
        "scheduler.pt",
        "state.json",
        "trainable.safetensors",
    ]


def test_resume_halfway_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    n = 10
    model, opt, sched = make_run()
    gen = torch.Generator().manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    train_steps(model, opt, sched, gen, 0, n)

    first, first_opt, first_sched = make_run()
    first_gen = torch.Generator().manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    train_steps(first, first_opt, first_sched, first_gen, 0, n // 2)
    save(tmp_path, n // 2, first, first_opt, first_sched, first_gen)
    # Disturb every stream, as a new process would start from different states.
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)

    second, second_opt, second_sched = make_run(seed=42)
    second_gen = torch.Generator().manual_seed(42)
    state = load_checkpoint(
        resolve_resume(tmp_path, "latest"),
        trainable_module_or_setter=second,
        optimizer=second_opt,
        lr_scheduler=second_sched,
        generators={"noise": second_gen},
    )
    second.frozen.load_state_dict(model.frozen.state_dict())  # frozen weights come from the base model, not the ckpt
    train_steps(second, second_opt, second_sched, second_gen, state["step"], n)

    for name, p in model.named_parameters():
        assert torch.equal(p, dict(second.named_parameters())[name]), name


def test_crash_mid_write_leaves_previous_checkpoint_as_latest(tmp_path, monkeypatch):
    model, opt, sched = make_run()
    good = save(tmp_path, 1, model, opt, sched)

    def exploding_save(obj, f, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", exploding_save)  # fails after trainable.safetensors was written
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, 2, model, opt, sched)
    monkeypatch.undo()

    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-1"]
    assert latest_checkpoint(tmp_path) == good == resolve_resume(tmp_path, "latest")
    assert (good / "trainable.safetensors").is_file()


def test_half_written_leftover_is_ignored_by_latest_and_cleaned_by_next_save(tmp_path):
    model, opt, sched = make_run()
    save(tmp_path, 1, model, opt, sched)
    leftover = tmp_path / "checkpoints" / ".tmp-step-2-deadbeef"
    leftover.mkdir()
    (leftover / "trainable.safetensors").write_bytes(b"partial")
    unmarked = tmp_path / "checkpoints" / "step-3"  # a copy without its COMPLETE marker is not a checkpoint
    unmarked.mkdir()
    assert latest_checkpoint(tmp_path).name == "step-1"
    save(tmp_path, 2, model, opt, sched)
    assert not leftover.exists()
    assert latest_checkpoint(tmp_path).name == "step-2"


def test_keep_last_prunes_oldest_but_never_the_one_just_written(tmp_path):
    model, opt, sched = make_run()
    for step in (1, 2, 3, 4, 5):
        save(tmp_path, step, model, opt, sched, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5]
    # A run resumed from an earlier step writes below what remains: what it just wrote is kept on top of keep_last.
    path = save(tmp_path, 3, model, opt, sched, keep_last=2)
    assert path.is_dir() and [s for s, _ in list_checkpoints(tmp_path)] == [3, 4, 5]


def test_saving_an_existing_step_replaces_it(tmp_path):
    model, opt, sched = make_run()
    save(tmp_path, 1, model, opt, sched)
    with torch.no_grad():
        model.head.weight.add_(1.0)
    path = save(tmp_path, 1, model, opt, sched)
    fresh, _, _ = make_run()
    load_checkpoint(path, trainable_module_or_setter=fresh)
    assert torch.equal(fresh.head.weight, model.head.weight)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-1"]


def test_setter_receives_the_saved_tensors(tmp_path):
    model, opt, sched = make_run()
    path = save(tmp_path, 1, model, opt, sched)
    received = {}
    load_checkpoint(path, trainable_module_or_setter=received.update)
    assert set(received) == {"head.weight", "head.bias"}
    assert torch.equal(received["head.weight"], model.head.weight)


def test_resume_latest_without_checkpoints_names_the_directory(tmp_path):
    with pytest.raises(InputError, match=r"--resume latest: nothing to resume, no complete checkpoint in "
                       r".*checkpoints \(the directory does not exist\); start the run with the same command "
                       r"without --resume"):
        resolve_resume(tmp_path, "latest")


def test_resume_path_that_is_not_a_checkpoint_says_what_is_there(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(InputError, match=r"not a complete checkpoint \(it contains: weights.bin; a checkpoint has"):
        resolve_resume(tmp_path, tmp_path)
    with pytest.raises(InputError, match="no such file or directory"):
        resolve_resume(tmp_path, tmp_path / "missing")
    model, opt, sched = make_run()
    save(tmp_path, 1, model, opt, sched)
    with pytest.raises(InputError, match="looks like a run directory"):
        resolve_resume(tmp_path, tmp_path)
    with pytest.raises(InputError, match=r"\(it contains: step-1/; pass one of its step-N directories\)"):
        resolve_resume(tmp_path, tmp_path / "checkpoints")
    with pytest.raises(InputError, match="is a file"):
        resolve_resume(tmp_path, tmp_path / "weights.bin")


def test_load_names_the_first_missing_or_unexpected_key(tmp_path):
    model, opt, sched = make_run()
    path = save(tmp_path, 1, model, opt, sched)
    other = Toy()
    other.frozen.requires_grad_(True)  # now the model has trainable keys the checkpoint lacks
    with pytest.raises(InputError, match=r"missing trainable key 'frozen.weight' \(2 missing in all\)"):
        load_checkpoint(path, trainable_module_or_setter=other)
    other = Toy()
    other.head.bias.requires_grad_(False)
    with pytest.raises(InputError, match="unexpected trainable key 'head.bias'"):
        load_checkpoint(path, trainable_module_or_setter=other)


def test_load_names_a_missing_generator(tmp_path):
    model, opt, sched = make_run()
    path = save(tmp_path, 1, model, opt, sched)
    with pytest.raises(InputError, match=r"no saved state for generator 'noise' \(saved: none\)"):
        load_checkpoint(path, trainable_module_or_setter=Toy(), generators={"noise": torch.Generator()})


def test_state_json_is_readable(tmp_path):
    model, opt, sched = make_run()
    path = save(tmp_path, 4, model, opt, sched)
    state = json.loads((path / "state.json").read_text())
    assert state["step"] == 4 and state["data_state"]["index"] == 32 and state["time"] > 0


def test_guard_stops_after_consecutive_skips_naming_last_good_checkpoint(tmp_path):
    model, opt, sched = make_run()
    save(tmp_path, 10, model, opt, sched)
    guard = NonFiniteGuard(tmp_path, max_consecutive=3)
    for step, finite in [(11, False), (12, False), (13, True), (14, False), (15, False)]:
        guard.update(step, finite)  # a finite step in between resets the count
    with pytest.raises(TrainingDiverged, match=r"step 16: .*3 consecutive steps.*last good checkpoint: .*step-10"):
        guard.update(16, False)


def test_ema_state_round_trips(tmp_path):
    from diffusers.training_utils import EMAModel

    model, opt, sched = make_run()
    ema = EMAModel(model.head.parameters(), decay=0.9)
    train_steps(model, opt, sched, torch.Generator().manual_seed(0), 0, 2)
    ema.step(model.head.parameters())
    path = save(tmp_path, 2, model, opt, sched, ema=ema)
    fresh, _, _ = make_run(seed=5)
    fresh_ema = EMAModel(fresh.head.parameters(), decay=0.5)
    load_checkpoint(path, trainable_module_or_setter=fresh, ema=fresh_ema)
    assert fresh_ema.decay == 0.9 and fresh_ema.optimization_step == ema.optimization_step
    for a, b in zip(ema.shadow_params, fresh_ema.shadow_params):
        assert torch.equal(a, b)


@pytest.fixture
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_round_trip_through_accelerate_prepared_objects(tmp_path, fresh_accelerate_state):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model, opt, sched = accelerator.prepare(*make_run())
    train_steps(model, opt, sched, torch.Generator().manual_seed(0), 0, 2)
    path = save(tmp_path, 2, model, opt, sched, accelerator=accelerator)
    expected = torch.rand(4)

    other, other_opt, other_sched = accelerator.prepare(*make_run(seed=9))
    load_checkpoint(
        path, trainable_module_or_setter=other, optimizer=other_opt, lr_scheduler=other_sched, accelerator=accelerator
    )
    assert torch.equal(torch.rand(4), expected)
    assert torch.equal(accelerator.unwrap_model(other).head.weight, accelerator.unwrap_model(model).head.weight)
    assert other_sched.scheduler.last_epoch == sched.scheduler.last_epoch


def test_non_main_process_writes_nothing_and_waits(tmp_path):
    calls = []
    worker = SimpleNamespace(
        is_main_process=False, num_processes=1, wait_for_everyone=lambda: calls.append("wait"), process_index=1
    )
    model, opt, sched = make_run()
    path = save(tmp_path, 1, model, opt, sched, accelerator=worker)
    assert path == tmp_path / "checkpoints" / "step-1" and not path.exists()
    assert calls == ["wait"]


def test_guard_names_the_newest_checkpoint_saved_after_a_finite_step_with_finite_weights(tmp_path):
    model, opt, sched = make_run()
    save(tmp_path, 2, model, opt, sched)
    save(tmp_path, 4, model, opt, sched, finite_step=False)  # written on a skipped step
    with torch.no_grad():
        next(model.head.parameters()).fill_(float("nan"))
    save(tmp_path, 6, model, opt, sched)  # a finite step, but the weights are not
    with pytest.raises(TrainingDiverged, match=r"last good checkpoint: \S*step-2 .*--resume \S*step-2\)"):
        NonFiniteGuard(tmp_path, max_consecutive=1).update(7, False)


def test_guard_says_so_when_no_checkpoint_is_good(tmp_path):
    model, opt, sched = make_run()
    save(tmp_path, 1, model, opt, sched, finite_step=False)
    with pytest.raises(TrainingDiverged, match="no checkpoint was saved after a finite step with finite weights"):
        NonFiniteGuard(tmp_path, max_consecutive=1).update(2, False)


def test_pruning_keeps_the_newest_good_checkpoint(tmp_path):
    model, opt, sched = make_run()
    save(tmp_path, 1, model, opt, sched, keep_last=1)
    for step in (2, 3):
        save(tmp_path, step, model, opt, sched, keep_last=1, finite_step=False)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [1, 3]
