"""Scenes, camera paths and prompts: motions mean what their names say, splits are stable, prompts state truths."""

import collections
import json
import math

import pytest
import torch

from drf.cli import main
from drf.errors import InputError
from drf.toyworld.grammar import CAMERA_PHRASES, SETTING, plan_prompt, prompt_for
from drf.toyworld.scene import (
    CUBE_YAW,
    CUBE_YAW_JITTER,
    HELD_OUT_COMBOS,
    SLIDE_DISTANCE,
    SLOT_JITTER,
    SLOTS,
    WORLD_CAMERA_MOTIONS,
    WORLD_COLORS,
    WORLD_OBJECT_MOTIONS,
    WORLD_SHAPES,
    CameraPath,
    ObjectSpec,
    sample_scene,
    sample_scenes,
    split_of,
    world_camera,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _axes(c2w: torch.Tensor):
    return c2w[:3, 0], c2w[:3, 2], c2w[:3, 3]  # right, forward, position


def test_camera_paths_move_the_way_they_are_named():
    base = dict(eye=(1.0, 2.0, -5.0), target=(0.0, 0.4, 0.0))
    for motion, amount in (("pan_left", 20), ("pan_right", 20), ("dolly_in", 1.5), ("dolly_out", 1.5),
                           ("orbit_left", 30), ("orbit_right", 30)):
        poses = CameraPath(motion=motion, amount=amount, **base).poses(17)
        right0, fwd0, pos0 = _axes(poses[0])
        _, fwd1, pos1 = _axes(poses[-1])
        sign = 1.0 if motion.endswith(("right", "in")) else -1.0
        if motion.startswith("pan"):
            assert torch.allclose(pos0, pos1) and sign * (fwd1 @ right0) > 0.3
        elif motion.startswith("dolly"):
            step, level_fwd = pos1 - pos0, fwd0 * torch.tensor([1.0, 0.0, 1.0], dtype=fwd0.dtype)
            assert abs(step[1]) < 1e-12  # dolly moves along the horizontal forward axis
            assert torch.allclose(torch.nn.functional.normalize(sign * step, dim=0),
                                  torch.nn.functional.normalize(level_fwd, dim=0))
            assert torch.allclose(fwd1, fwd0)
        else:  # orbit: the camera travels sideways and keeps looking at the target
            assert sign * ((pos1 - pos0) @ right0) > 1.0
            to_target = torch.nn.functional.normalize(torch.tensor(base["target"], dtype=pos1.dtype) - pos1, dim=0)
            assert torch.allclose(fwd1, to_target)
    static = CameraPath(**base).poses(5)
    assert torch.equal(static[0], static[-1])


def test_jitter_is_seeded_and_small():
    a = CameraPath(jitter=0.02, jitter_seed=3).poses(17)
    assert torch.equal(a, CameraPath(jitter=0.02, jitter_seed=3).poses(17))
    assert not torch.equal(a, CameraPath(jitter=0.02, jitter_seed=4).poses(17))
    assert (a[:, :3, 3] - torch.tensor(CameraPath().eye, dtype=a.dtype)).abs().max() < 0.2


def test_splits_are_disjoint_and_held_out_combos_only_appear_in_eval():
    train, evals = sample_scenes(40, seed=0, split="train"), sample_scenes(20, seed=0, split="eval")
    assert all(split_of(s) == "train" for s in train) and all(split_of(s) == "eval" for s in evals)
    assert not any((o.color, o.shape) in HELD_OUT_COMBOS for s in train for o in s.objects)
    assert {prompt_for(s) for s in train}.isdisjoint(prompt_for(s) for s in evals)


def test_sampler_covers_the_world_vocabulary_and_nothing_else():
    scenes = sample_scenes(120, seed=5)
    cameras = collections.Counter(s.camera.motion for s in scenes)
    motions = collections.Counter(o.motion for s in scenes for o in s.objects)
    counts = collections.Counter(len(s.objects) for s in scenes)
    assert set(cameras) == set(WORLD_CAMERA_MOTIONS) and min(cameras.values()) >= 20
    assert set(motions) == set(WORLD_OBJECT_MOTIONS)
    assert {o.color for s in scenes for o in s.objects} == set(WORLD_COLORS)
    assert {o.shape for s in scenes for o in s.objects} == set(WORLD_SHAPES)
    assert set(counts) == {1, 2}


def test_nothing_visible_varies_unless_the_prompt_states_it():
    """World v2: one start pose, one pan angle, no jitter, objects on the slots their count and relation fix (one
    object in the centre, two left and right), one slide distance, one cube yaw; sizes are always stated."""
    for scene in sample_scenes(150, seed=13):
        assert scene.camera == world_camera(scene.camera.motion)
        assert scene.camera.jitter == 0
        right = [o.position[0] for o in scene.objects]
        expected = [SLOTS["center"]] if len(right) == 1 else sorted([SLOTS["left"], SLOTS["right"]])
        # The frame-0 camera looks along +z from x = 0, so world x is camera-right.
        assert sorted(right) == pytest.approx(expected, abs=SLOT_JITTER * 1.0001)
        for o in scene.objects:
            assert abs(o.position[1]) <= SLOT_JITTER * 1.0001
            assert math.hypot(*o.travel) == pytest.approx(SLIDE_DISTANCE if o.motion != "none" else 0.0)
            if o.shape == "cube":
                assert abs(o.yaw - CUBE_YAW) <= CUBE_YAW_JITTER
        text = prompt_for(scene)
        assert all(f"{o.size} {o.color} {o.shape}" in text for o in scene.objects)


def test_prompt_states_only_what_is_true_in_the_scene():
    for scene in sample_scenes(50, seed=11):
        text, plan = prompt_for(scene), plan_prompt(scene)
        assert text == prompt_for(scene)  # deterministic
        assert SETTING in text and text.endswith(CAMERA_PHRASES[scene.camera.motion])
        assert sum(g.count for g in plan.groups) == len(scene.objects)
        for g in plan.groups:
            assert f"{g.color} {g.shape}" in text
        for a, relation, b in plan.relations:
            assert scene.relation(a, b, relation)
        moving = [i for i, o in enumerate(scene.objects) if o.motion != "none"]
        assert [m[0] for m in ([plan.motion] if plan.motion else [])] == moving


def test_example_prompt_shape():
    scene = sample_scene(3)
    assert prompt_for(scene).startswith(("a ", "one ", "two "))


def test_unknown_vocabulary_is_a_one_line_input_error():
    with pytest.raises(InputError, match="object color 'pink' is not one of red, orange"):
        ObjectSpec("cube", "pink", "small", (0.0, 0.0))
    with pytest.raises(InputError, match="camera motion 'zoom_in'"):
        CameraPath(motion="zoom_in")
    with pytest.raises(InputError, match="split must be"):
        sample_scene(0, split="test")


def test_prompt_file_holds_distinct_prompts_and_no_eval_prompt_is_a_train_prompt(tmp_path, capsys):
    out = tmp_path / "prompts.jsonl"
    assert main(["toyworld", "prompts", str(out), "--train", "40", "--eval", "24"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    train = [r["prompt"] for r in rows if r["split"] == "train"]
    held_out = [r["prompt"] for r in rows if r["split"] == "eval"]
    assert len(set(train)) == len(train) == 40 and len(set(held_out)) == len(held_out) == 24
    assert not set(train) & set(held_out)

