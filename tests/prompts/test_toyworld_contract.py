"""Every toy-world prompt parses back into the scene it was written from (the oracle answers from these slots)."""

import pytest

from prompts.parse import parse_prompt

grammar = pytest.importorskip("drf.toyworld.grammar")
scene_module = pytest.importorskip("drf.toyworld.scene")


def test_toy_world_prompts_round_trip_through_the_rule_parser():
    scenes = scene_module.sample_scenes(60, seed=1)
    for scene in scenes:
        prompt, plan, slots = grammar.prompt_for(scene), grammar.plan_prompt(scene), parse_prompt(grammar.prompt_for(scene))
        want = sorted((g.shape, g.color, g.size, g.count) for g in plan.groups)
        got = sorted((s.get("shape"), s.get("color"), s.get("size"), s.get("count")) for s in slots["subjects"])
        assert got == want, prompt
        assert slots["camera"] == plan.camera, prompt
        assert [r["relation"] for r in slots["relations"]] == [r for _, r, _ in plan.relations], prompt
        assert [m["direction"] for m in slots["motions"]] == ([plan.motion[1]] if plan.motion else []), prompt
        assert slots["setting"] == "checkered floor"
