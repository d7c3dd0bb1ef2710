"""The run's ``rewards:`` list: what it refuses (one line, where), a user's python reward trained by DRF, latent-only
rewards that never decode, per-reward advantages in GRPO, geometry rewards with gradients and one model forward."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from drf.config import load_config
from drf.errors import ConfigError
from drf.geometry.latent_rewards import geometry_reward, load_geometry_model
from drf.logging import read_metrics
from drf.reward_config import load_callable
from drf.run_dir import RunDir
from tests.trainers.conftest import TINY_CONFIG, make_trainer
from trainers.drf import DRFRunConfig

BRIGHTNESS = "{name: brightness, python: 'tests.trainers.example_rewards:brightness', differentiable: true}"


def config_without_critic(tmp_path, rewards: str, schema=DRFRunConfig, source=TINY_CONFIG, *overrides: str):
    """A tiny config whose rewards list has no critic (so its critic section goes too)."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data.pop("critic")
    data["prompts"] = str(source.parent / data["prompts"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(path, schema, [f"rewards={rewards}", f"logging.output_dir={tmp_path}", "logging.report=false",
                                      *overrides])  # fmt: skip


@pytest.mark.parametrize(
    ("rewards", "message"),
    [
        ("[{name: critc}]", r"rewards\[0\]\.name 'critc' is not a built-in reward .*did you mean 'critic'\?"),
        ("[{name: critic}, {name: critic}]", r"rewards names 'critic' twice"),
        ("[{name: critic, weight: 0}]", r"rewards needs at least one weight > 0"),
        ("[{name: critic, weight: -1}]", r"rewards\[0\]\.weight must be finite and >= 0"),
        ("[{name: critic}, {name: b, python: nomodule}]", r"rewards\[1\]\.python is 'nomodule'; write package"),
        ("[{name: critic, reads: latents}]", r"rewards\[0\]\.reads critic reads frames; leave reads out"),
        ("[{name: critic, python: 'a:b'}]", r"rewards\[0\]\.name 'critic' is a built-in reward"),
        ("[{name: critic, model: toyworld}]", r"rewards\[0\]\.model is read by geometry.\* rewards only"),
        ("[{name: critic, geometry: {reproj_tau: 0.1}}]", r"rewards\[0\]\.geometry is read by geometry.\* rewards"),
        ("[{name: geometry.reprojection, model: toyworld, geometry: {reproj_ta: 0.1}}]",
         r"unknown key 'rewards\[0\]\.geometry\.reproj_ta'; did you mean 'rewards\[0\]\.geometry\.reproj_tau'"),
        ("[]", r"rewards is empty"),
        ("[{weight: 1.0}]", r"missing required key 'rewards\[0\]\.name'"),
    ],
)
def test_bad_reward_lists_are_refused_in_one_line(tmp_path, rewards, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(TINY_CONFIG, DRFRunConfig, [f"rewards={rewards}"])
    assert "\n" not in str(err.value)


def test_a_bad_entry_in_a_file_is_named_with_its_line(tmp_path):
    path = tmp_path / "run.yaml"
    text = "model:\n  tiny: wan-tiny\nrewards:\n  - name: critic\n  - name: geometry.smothness\n    model: toyworld\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:5: rewards\[1\]\.name .*did you mean 'geometry.smoothness'"):
        load_config(path, DRFRunConfig)


def test_a_critic_section_without_a_critic_reward_is_refused():
    with pytest.raises(ConfigError, match=r"critic is set but rewards lists no critic"):
        load_config(TINY_CONFIG, DRFRunConfig, [f"rewards=[{BRIGHTNESS}]"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_here:f", r"^rewards\[2\]\.python: cannot import 'no_such_module_here' \(ModuleNotFoundError"),
        ("tests.trainers.example_rewards:nothing", r"has no attribute 'nothing'"),
        ("tests.trainers.example_rewards:NOT_CALLABLE", r"example_rewards:NOT_CALLABLE is a int, not a callable"),
    ],
)
def test_a_python_reward_that_cannot_be_loaded_says_why(spec, message):
    with pytest.raises(ConfigError, match=message):
        load_callable(spec, "rewards[2].python")


def test_drf_refuses_a_reward_gradients_do_not_pass(tmp_path):
    cfg = config_without_critic(tmp_path, "[{name: brightness, python: 'tests.trainers.example_rewards:brightness'}]")
    with pytest.raises(ConfigError, match=r"rewards\[0\] \(brightness\): DRF backpropagates .* not differentiable"):
        make_trainer(cfg)


def test_drf_trains_on_a_users_python_reward_alone(tmp_path):
    """No critic in the list: DRF climbs the user's brightness, logs it by name, and records it per eval video."""
    cfg = config_without_critic(tmp_path, f"[{BRIGHTNESS}]", DRFRunConfig, TINY_CONFIG, "drf.steps=2",
                                "drf.learning_rate=5e-2", "logging.sample_every=2", "drf.export=false")  # fmt: skip
    trainer = make_trainer(cfg)
    assert [cfg.name for cfg, _ in trainer.rewards.entries] == ["brightness"]
    before = {n: p.detach().clone() for n, p in trainer.transformer.named_parameters() if "lora_B" in n}
    trainer.train()
    assert any(not torch.equal(before[n], p) for n, p in trainer.transformer.named_parameters() if n in before)
    records = read_metrics(trainer.run_dir)
    assert records[-1]["reward/brightness"] == pytest.approx(records[-1]["reward/total"])
    assert not any(k.startswith("reward/aspect/") for r in records for k in r)
    scores = json.loads(RunDir(trainer.run_dir).scores(2).read_text(encoding="utf-8"))
    assert all(set(s["by_reward"]) == {"brightness"} and s["reward"] == s["by_reward"]["brightness"] for s in scores)


def test_latent_rewards_alone_never_decode(grpo_cfg, tmp_path):
    from tests.trainers.conftest import TINY_GRPO_CONFIG
    from trainers.grpo import GRPORunConfig

    rewards = ("[{name: geometry.smoothness, model: toyworld}, {name: energy, weight: 0.5, "
               "python: 'tests.trainers.example_rewards:latent_energy', reads: latents}]")  # fmt: skip
    cfg = config_without_critic(tmp_path, rewards, GRPORunConfig, TINY_GRPO_CONFIG, "model.num_frames=9",
                                "grpo.steps=1", "logging.sample_every=0", "grpo.export=false")  # fmt: skip
    trainer = make_trainer(cfg)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded although no reward reads frames")

    trainer.generator.decode = refuse
    trainer.train()
    record = read_metrics(trainer.run_dir)[-1]
    assert {"reward/geometry.smoothness", "reward/energy", "reward/energy/std"} <= record.keys()
    assert "time/decode" not in record


def test_grpo_normalises_each_named_reward_before_weighting(grpo_cfg):
    """A reward 10^5 times larger than another does not drown it: each is a group-relative advantage first."""
    trainer = make_trainer(grpo_cfg("name=adv"))
    weights = trainer.rewards.weights  # critic 1, smoothness .5, reprojection .5, trajectory .5, dynamic degree 0
    group = trainer.cfg.grpo.group_size
    small = torch.arange(float(group)) * 1e-2
    large = torch.arange(float(group)).flip(0) * 1e3
    zeros = torch.zeros(group)
    named = {"critic": small, "geometry.smoothness": large, "geometry.reprojection": zeros,
             "geometry.trajectory": zeros, "geometry.dynamic_degree": large}  # fmt: skip
    got, _, _ = trainer.advantages(named, ["p"])
    unit = (small - small.mean()) / small.std(unbiased=False)
    expected = weights["critic"] * unit - weights["geometry.smoothness"] * unit
    torch.testing.assert_close(got, expected.clamp(-5, 5))


def test_geometry_rewards_pass_gradients_to_the_latents_and_share_one_forward():
    model = load_geometry_model("toyworld", "cpu")
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    side = 8 * model.config.patch  # the toy model's 8x8 token grid, 5 latent frames
    # Small random latents: on 0.5 x N(0,1) the toy LGM finds no static surface, and reprojection is flat at 0.
    latents = (0.1 * torch.randn(2, 16, 5, side, side, generator=torch.Generator().manual_seed(0))).requires_grad_()
    prompts = ["a red cube, the camera pans left", "a blue sphere"]
    memo: dict = {}
    rewards = {kind: geometry_reward(kind, model, lambda p: "pan_left" if "pans left" in p else None)
               for kind in ("smoothness", "reprojection", "trajectory", "dynamic_degree")}  # fmt: skip
    outs = {kind: reward(latents, prompts, memo=memo) for kind, reward in rewards.items()}
    assert len(calls) == 1
    assert all(reward.reads == "latents" and reward.differentiable for reward in rewards.values())
    assert outs["trajectory"].per_question[1, 0] == 0  # the second prompt names no camera move
    for kind, out in outs.items():
        (grad,) = torch.autograd.grad(out.per_question[0, 0], latents, retain_graph=True)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, kind


def test_the_critics_augmentation_reaches_its_reward_and_draws_from_each_videos_noise_seed(run_cfg):
    """critic.augment builds the critic reward with it, and every reward is handed each video's noise seed (the one
    stream_noise drew its latents from), so random views are a pure function of (seed, step, the video's place in the
    step's batch)."""
    from tests.trainers import example_rewards
    from trainers.data import stream_seed

    recorder = "{name: seeds, weight: 0, python: 'tests.trainers.example_rewards:seed_recorder', differentiable: true}"
    cfg = run_cfg("name=aug", f"rewards=[{{name: critic}}, {recorder}]", "critic.augment.n=2", "drf.steps=1",
                  "logging.sample_every=0", "drf.export=false", "drf.checkpoint_every=0")  # fmt: skip
    trainer = make_trainer(cfg)
    critic_reward = next(reward for c, reward in trainer.rewards.entries if c.name == "critic")
    assert critic_reward.augment.n == 2
    example_rewards.SEEDS_SEEN.clear()
    trainer.train()
    assert example_rewards.SEEDS_SEEN == [[stream_seed(cfg.seed, 0, 0, place)] for place in range(2)]  # 1 x 2 micro
    assert all(map(math.isfinite, read_metrics(trainer.run_dir)[-1].values()))


def test_batched_evaluation_scores_each_video_as_alone(tmp_path):
    """Eval videos sampled 3 at a time start from the same noise as one at a time: same scores, same frames."""
    from trainers.evaluation import sample_and_score

    trainer = make_trainer(config_without_critic(tmp_path, f"[{BRIGHTNESS}]", DRFRunConfig, TINY_CONFIG, "name=ev"))
    prompts = trainer._eval_prompts() * 2
    runs = {}
    for batch in (1, 3):
        runs[batch] = sample_and_score(
            trainer.generator, trainer.rewards, prompts, [trainer.question_sets[p] for p in prompts],
            sampling=trainer.cfg.sampling, seed=5, out_dir=tmp_path / f"batch{batch}", video_format="gif", fps=8,
            batch_size=batch,
        )  # fmt: skip
    # A slice of the same evaluation (videos 1 and 2, padded with one more that is not kept), as one of several
    # processes runs it: the same videos as in the whole.
    part = prompts[1:3] + prompts[:1]
    runs["slice"] = sample_and_score(
        trainer.generator, trainer.rewards, part, [trainer.question_sets[p] for p in part],
        sampling=trainer.cfg.sampling, seed=5, out_dir=tmp_path / "slice", video_format="gif", fps=8,
        batch_size=3, indices=[1, 2, 3], keep=2,
    )  # fmt: skip
    assert [r["video"] for r in runs["slice"]] == [r["video"] for r in runs[1][1:3]]
    for alone, part in zip(runs[1][1:3], runs["slice"]):
        assert part["reward"] == pytest.approx(alone["reward"], abs=1e-5)
    assert len(runs[1]) == len(prompts) == 4
    for alone, batched in zip(runs[1], runs[3]):
        assert alone["prompt"] == batched["prompt"]
        assert batched["reward"] == pytest.approx(alone["reward"], abs=1e-5)
    assert runs[1][0]["reward"] != pytest.approx(runs[1][2]["reward"], abs=1e-5)  # same prompt, its own noise


def test_a_geometry_entrys_calibrated_knobs_reach_its_reward():
    """dynamic_degree = 1 - exp(-motion / dynamic_scale) (docs/geometry.md): the same motion scored with the default
    scale 0.05 and with 0.3 set in the run config gives 1 - d_0.3 = (1 - d_0.05) ** (0.05 / 0.3)."""
    from trainers.rewards import build_rewards

    def degree(entry: str) -> torch.Tensor:
        cfg = load_config(TINY_CONFIG, DRFRunConfig, [f"rewards=[{{name: critic}}, {entry}]"])
        (_, reward), = [e for e in build_rewards(cfg.rewards, None, None, "cpu").entries if e[0].name != "critic"]
        side = 8 * 2  # the toy geometry model's 8x8 token grid with patch 2
        latents = 0.1 * torch.randn(2, 16, 3, side, side, generator=torch.Generator().manual_seed(0))
        return reward(latents, ["a red cube, the camera pans left"] * 2, memo={}).per_question[:, 0]

    default = degree("{name: geometry.dynamic_degree, model: toyworld}")
    wider = degree("{name: geometry.dynamic_degree, model: toyworld, geometry: {dynamic_scale: 0.3}}")
    assert 0 < default.min() and default.max() < 1
    torch.testing.assert_close(1 - wider, (1 - default) ** (0.05 / 0.3), rtol=1e-4, atol=1e-6)


def test_a_new_built_in_reward_is_one_registration(tmp_path, capsys, monkeypatch):
    """Registered once, a reward is valid in rewards:, listed by errors and drf config reference, built and trained."""
    from drf.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # the reference table wraps to the terminal: wide enough not to split a row
    from drf.rewards import REWARDS, BuiltInReward, NamedReward, register_reward

    def build(entry, context, where):
        return NamedReward("redness", lambda frames, prompts, **_: frames[:, :, 0].mean(dim=(1, 2, 3)), reads="frames",
                           differentiable=True)  # fmt: skip

    register_reward("redness", BuiltInReward("frames", True, build, help="mean red channel"))
    try:
        with pytest.raises(ConfigError, match=r"is not a built-in reward \(critic, geometry\..*, redness\)"):
            load_config(TINY_CONFIG, DRFRunConfig, ["rewards=[{name: redish}]"])
        assert main(["config", "reference", "--schema", "drf"]) == 0
        assert "rewards: {name: redness}" in capsys.readouterr().out
        cfg = config_without_critic(tmp_path, "[{name: redness}]", DRFRunConfig, TINY_CONFIG, "drf.steps=1",
                                    "logging.sample_every=0", "drf.export=false")  # fmt: skip
        trainer = make_trainer(cfg)
        trainer.train()
        assert "reward/redness" in read_metrics(trainer.run_dir)[-1]
    finally:
        del REWARDS["redness"]
