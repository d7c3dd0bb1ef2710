"""The rule decomposer: toy-world grammar parsed exactly, free text parsed as far as the word lists go, any prompt safe."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drf.errors import InputError
from prompts.config import QuestionsConfig
from prompts.parse import parse_prompt
from prompts.registry import decompose
from prompts.schema import ASPECTS, KINDS, QuestionSet
from prompts.words import CAMERA_MOTIONS, COLORS, TOY_SHAPES

GOLDEN = Path(__file__).parent / "golden" / "rule_decompositions.json"
GOLDEN_PROMPTS = [
    # toy world
    "a small red cube left of a blue sphere on a checkered floor, the camera pans right",
    "two green cylinders and a yellow sphere, the yellow sphere rolls toward the camera, static camera",
    "three large white cubes slide left, the camera dollies in",
    "a purple sphere behind an orange cylinder, the camera orbits left",
    "a magenta cube in front of a cyan sphere on a checkered floor, the camera zooms out",
    "a big blue cylinder next to a small yellow cube, the cube moves right, the camera is still",
    "a red sphere rolls away from the camera on a checkered floor, the camera moves backward",
    "one green cube right of two red spheres, the camera pans left",
    "2 blue cubes and 1 white cylinder, the camera orbits right",
    "a small cyan cylinder slides to the right, the camera moves forward",
    "A Small RED Cube!! left of a BLUE sphere",
    # free text
    "A man walks a dog in the park",
    "a corgi dog running on the beach at sunset, cinematic, slow motion",
    "two cats sleeping on a wooden table, watercolor",
    "a red car drives down a busy street, the camera slowly pans left",
    "an astronaut riding a horse on the moon, photorealistic, 4k",
    "a cup next to a book, static camera",
    "a bird flying above a blue lake",
    "an orange cube and an orange",
    "un chat noir sur une table",
    "東京の街に雨が降る",
]


def _golden_entry(prompt: str) -> dict:
    qset = decompose(prompt, QuestionsConfig())
    data = qset.to_dict()
    data.pop("config_hash")  # changes with every template edit; the questions themselves are what is pinned
    return {"slots": parse_prompt(prompt)} | data


def test_golden_decompositions_are_unchanged():
    """Set DRF_REGEN_GOLDEN=1 to rewrite the golden file after an intended change, then review its diff."""
    entries = [_golden_entry(p) for p in GOLDEN_PROMPTS]
    if os.environ.get("DRF_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert [g["prompt"] for g in golden] == GOLDEN_PROMPTS
    for got, want in zip(entries, golden):
        assert got == want, f"decomposition changed for {want['prompt']!r}"


def test_toy_example_parses_into_the_documented_slots():
    slots = parse_prompt("a small red cube left of a blue sphere on a checkered floor, the camera pans right")
    assert slots["subjects"] == [
        {"noun": "cube", "plural": "cubes", "shape": "cube", "color": "red", "size": "small", "count": 1,
         "attributes": []},
        {"noun": "sphere", "plural": "spheres", "shape": "sphere", "color": "blue", "count": 1, "attributes": []},
    ]  # fmt: skip
    assert slots["relations"] == [{"relation": "left_of", "a": 0, "b": 1}]
    assert slots["camera"] == "pan_right"
    assert slots["setting"] == "checkered floor"
    assert slots["motions"] == [] and slots["style"] == []


@pytest.mark.parametrize("shape", TOY_SHAPES)
@pytest.mark.parametrize("color", COLORS)
def test_every_toy_colour_and_shape_is_recognised(shape, color):
    (subject,) = parse_prompt(f"a {color} {shape}")["subjects"]
    assert (subject["shape"], subject["color"], subject["count"]) == (shape, color, 1)


@pytest.mark.parametrize(
    ("words", "size", "count"),
    [("a tiny", "small", 1), ("one big", "large", 1), ("two large", "large", 2), ("three small", "small", 3),
     ("4", None, 4), ("an", None, 1)],
)  # fmt: skip
def test_sizes_and_counts(words, size, count):
    (subject,) = parse_prompt(f"{words} cubes" if count > 1 else f"{words} cube")["subjects"]
    assert subject.get("size") == size and subject["count"] == count


def test_magenta_is_the_toy_purple():
    assert parse_prompt("a magenta sphere")["subjects"][0]["color"] == "purple"


@pytest.mark.parametrize(
    ("phrase", "camera"),
    [("the camera pans left", "pan_left"), ("the camera pans right", "pan_right"),
     ("the camera dollies in", "dolly_in"), ("the camera dollies out", "dolly_out"),
     ("the camera zooms in", "dolly_in"), ("the camera zooms out", "dolly_out"),
     ("the camera moves forward", "dolly_in"), ("the camera moves backward", "dolly_out"),
     ("the camera orbits left", "orbit_left"), ("the camera orbits right", "orbit_right"),
     ("static camera", "static"), ("the camera is still", "static"), ("the camera slowly pans to the left", "pan_left")],
)  # fmt: skip
def test_camera_phrases(phrase, camera):
    slots = parse_prompt(f"a red cube, {phrase}")
    assert slots["camera"] == camera and slots["camera"] in CAMERA_MOTIONS
    assert slots["motions"] == [], "camera words must not become object motion"


@pytest.mark.parametrize(
    ("phrase", "direction"),
    [("moves left", "left"), ("rolls right", "right"), ("slides to the left", "left"),
     ("rolls toward the camera", "toward"), ("moves away", "away"), ("slides away from the camera", "away")],
)  # fmt: skip
def test_object_motion_phrases(phrase, direction):
    slots = parse_prompt(f"a blue sphere and a red cube, the red cube {phrase}, the camera pans left")
    assert slots["motions"] == [{"subject": 1, "direction": direction, "verb": phrase.split()[0]}]
    assert len(slots["subjects"]) == 2, "'the red cube' refers back to the first mention"
    assert slots["camera"] == "pan_left"


@pytest.mark.parametrize(
    ("phrase", "relation"),
    [("left of", "left_of"), ("to the left of", "left_of"), ("right of", "right_of"), ("in front of", "in_front_of"),
     ("behind", "behind"), ("next to", "next_to"), ("is to the right of", "right_of")],
)  # fmt: skip
def test_spatial_relations(phrase, relation):
    slots = parse_prompt(f"a red cube {phrase} a green cylinder")
    assert slots["relations"] == [{"relation": relation, "a": 0, "b": 1}]


def test_question_ids_follow_the_documented_scheme():
    qset = decompose("a small red cube left of a blue sphere on a checkered floor, the camera pans right")
    by_id = {q.id: q for q in qset}
    assert by_id["align.object.red_cube"].slots == {"noun": "cube", "plural": "cubes", "shape": "cube",
                                                    "color": "red", "size": "small", "count": 1, "attributes": []}
    assert by_id["align.count.sphere"].kind == "choice" and by_id["align.count.sphere"].expected == "1"
    spatial = by_id["align.spatial.red_cube.left_of.blue_sphere"]
    assert spatial.expected == "yes" and spatial.slots["relation"] == "left_of"
    assert by_id["align.spatial.red_cube.right_of.blue_sphere"].expected == "no"
    assert by_id["align.camera.pan_right"].expected == "yes" and by_id["align.camera.pan_left"].expected == "no"
    assert by_id["align.camera.motion"].expected == "pan right"
    assert by_id["align.object.yellow_cube"].expected == "no", "a deterministic absent colour (next in the toy palette)"
    assert by_id["align.color.red_cube"].kind == "dense" and by_id["align.color.red_cube"].expected == "red"
    assert {"phys.permanence", "qual.sharpness", "temp.identity.red_cube"} <= set(by_id)
    assert by_id["align.object.red_cube"].template == "alignment.j2#align.object"
    assert {q.kind for q in qset} == set(KINDS) and {q.aspect for q in qset} == set(ASPECTS)


def test_aspects_weights_and_negatives_are_configurable():
    prompt = "a red cube rolls left, the camera pans right"
    only = decompose(prompt, QuestionsConfig(aspects=["physics", "quality"]))
    assert {q.aspect for q in only} == {"physics", "quality"}
    zero = decompose(prompt, QuestionsConfig(aspect_weights={"alignment": 0.0}))
    assert "alignment" not in {q.aspect for q in zero}
    no_neg = decompose(prompt, QuestionsConfig(negatives=False))
    assert "align.motion.red_cube.right" not in no_neg.ids and "align.camera.pan_left" not in no_neg.ids
    assert "align.motion.red_cube.left" in no_neg.ids


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_is_a_clear_input_error(prompt):
    with pytest.raises(InputError, match="prompt is empty"):
        decompose(prompt)


_WORDS = ["a", "the", "two", "3", "red", "magenta", "small", "big", "cube", "spheres", "cylinder", "left", "right",
          "of", "behind", "in", "front", "next", "to", "camera", "pans", "dollies", "orbits", "zooms", "moves",
          "rolls", "toward", "away", "from", "static", "is", "still", "on", "checkered", "floor", "it", ",", ".",
          "dog", "running", "cinematic", "and", "orange"]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(min_size=1, max_size=80), st.lists(st.sampled_from(_WORDS), min_size=1, max_size=25).map(" ".join)))
def test_rule_decomposer_never_crashes_and_always_yields_valid_sets(prompt):
    if not prompt.strip():
        with pytest.raises(InputError):
            decompose(prompt)
        return
    qset = decompose(prompt)
    assert len(qset) > 0
    again = QuestionSet.from_json(qset.to_json())  # re-validates every question
    assert again.ids == qset.ids


def test_subjects_told_apart_only_by_size_get_no_ambiguous_size_question():
    qset = decompose("a small red cube and a large red cube, the small red cube slides left")
    assert {"align.object.small_red_cube", "align.object.large_red_cube"} <= set(qset.ids)
    assert not any(i.startswith("align.size.") for i in qset.ids), "'the red cube' would name both"
    assert next(q for q in qset if q.id == "align.count.cube").expected == "2"
    assert "align.motion.small_red_cube.left" in qset.ids


def test_a_prompt_that_mentions_the_red_cube_five_times_asks_each_question_once():
    from prompts.templates import render_questions

    prompt = " ".join(["a red cube slides to the left on a checkered floor."] * 5)
    config = QuestionsConfig()
    rendered = render_questions(parse_prompt(prompt), config)  # what the templates make of the parsed mentions
    texts = [q.text for q in rendered]
    assert texts.count("Is there a red cube in the video?") == 5  # one per mention
    asked = decompose(prompt, config).questions
    assert [q.text for q in asked] == list(dict.fromkeys(texts))  # each distinct text once, at its first place
    assert [q.id for q in asked] == [next(r.id for r in rendered if r.text == q.text) for q in asked]


def test_a_ten_thousand_character_prompt_asks_only_its_distinct_questions():
    prompt = "a small red cube left of a blue sphere on a checkered floor, the camera pans right, " * 120
    asked = decompose(prompt.strip(), QuestionsConfig()).questions  # within the default cap of 64
    assert len(prompt) > 10_000 and len(asked) == len({q.text for q in asked}) <= 33
