"""A run interrupted after a checkpoint and resumed ends with bit-identical weights to an uninterrupted run (CPU)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from drf.checkpoint import load_checkpoint
from drf.logging import read_metrics
from tests.trainers.conftest import make_trainer, wrap_critic

# Everything that carries state across steps is on: random-K windows and frames, accumulation over two prompts per
# step, warm-up + cosine schedule, EMA and the KL penalty (whose base pass toggles the adapter).
SETTINGS = (
    "drf.steps=4",
    "drf.checkpoint_every=2",
    "drf.keep_last=5",
    "drf.lr_schedule=cosine",
    "drf.warmup_steps=2",
    "drf.ema=true",
    "drf.kl_weight=0.5",
    "drf.export=false",
    "logging.sample_every=0",
    "sampling.frames.policy=random_n",
    "sampling.frames.n=3",
)


needs_bitsandbytes = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="adamw8bit needs the quant extra"
)


class Interrupt(Exception):
    pass


class StopAfter:
    """The shared critic, raising once it has scored ``calls`` micro-batches (a crash in the middle of the run)."""

    def __init__(self, critic, calls: int) -> None:
        self.critic, self.left = critic, calls

    def score(self, frames, question_sets):
        if self.left == 0:
            raise Interrupt
        self.left -= 1
        return self.critic.score(frames, question_sets)


def _state(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.transformer.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("optimizer", ["adamw", pytest.param("adamw8bit", marks=needs_bitsandbytes)])
def test_resume_continues_bit_for_bit(run_cfg, optimizer):
    settings = (*SETTINGS, f"drf.optimizer={optimizer}")
    straight = make_trainer(run_cfg("name=straight", *settings))
    straight.train()

    first = make_trainer(run_cfg("name=resumed", *settings))
    wrap_critic(first, lambda critic: StopAfter(critic, calls=3 * 2))  # dies inside step 4, after checkpoint step-2
    with pytest.raises(Interrupt):
        first.train()
    second = make_trainer(run_cfg("name=resumed", *settings), resume="latest")
    assert second.step == 2
    second.train()

    expected, got = _state(straight), _state(second)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    for a, b in zip(straight.ema.shadow_params, second.ema.shadow_params):
        assert torch.equal(a, b)
    sa, sb = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    for index in sa:
        for key, value in sa[index].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, sb[index][key]), key
    # The metrics file of the resumed run reads like one run: steps 1..4 once each, the same rewards.
    straight_rewards = [r["reward/total"] for r in read_metrics(straight.run_dir)]
    resumed = read_metrics(second.run_dir)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["reward/total"] for r in resumed] == straight_rewards


def test_resume_from_a_checkpoint_path_restores_its_step(run_cfg):
    cfg = run_cfg("name=path", "drf.steps=2", "drf.checkpoint_every=1", "drf.export=false", "logging.sample_every=0")
    trainer = make_trainer(cfg)
    trainer.train()
    resumed = make_trainer(cfg, resume=str(trainer.run_dir / "checkpoints" / "step-1"))
    assert resumed.step == 1
    saved = load_checkpoint(trainer.run_dir / "checkpoints" / "step-1", trainable_module_or_setter=lambda state: None)
    layout = {"processes": 1, "prompts_per_step": 1, "gradient_accumulation": 2}  # a resume elsewhere keeps 1 x 2 x 1
    assert saved["data_state"] == {"position": 2, "epoch": 0, **layout}


def test_resuming_with_a_changed_config_names_the_changed_keys(run_cfg, capsys):
    settings = ("name=changed", "drf.checkpoint_every=1", "drf.export=false", "logging.sample_every=0")
    make_trainer(run_cfg(*settings, "drf.steps=1")).train()
    capsys.readouterr()
    make_trainer(run_cfg(*settings, "drf.steps=3", "drf.learning_rate=0.002"), resume="latest")
    out = capsys.readouterr().out
    assert "the config differs" in out and "(drf.learning_rate, drf.steps)" in out


def test_a_resumed_run_prints_before_after_from_the_base_evaluation(run_cfg, capsys):
    settings = ("name=whole", "drf.checkpoint_every=1", "drf.export=false", "logging.sample_every=2")
    make_trainer(run_cfg(*settings, "drf.steps=2")).train()
    capsys.readouterr()
    make_trainer(run_cfg(*settings, "drf.steps=4"), resume="latest").train()
    assert "held-out reward, step 0 -> step 4:" in capsys.readouterr().out
