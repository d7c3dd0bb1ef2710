"""Templates render in a sandbox with strict slots, and lint finds every planted defect at its file:line."""

from pathlib import Path

import pytest

from drf.errors import InputError, TemplateError
from prompts.context import normalize_slots
from prompts.lint import lint_templates
from prompts.parse import parse_prompt
from prompts.templates import PACKAGED_DIR, render_template

BROKEN = Path(__file__).parent / "broken_templates"


def test_packaged_templates_lint_clean():
    assert [str(p) for p in lint_templates()] == []


def test_every_packaged_aspect_has_a_template():
    assert {p.stem for p in PACKAGED_DIR.glob("[!_]*.j2")} == {"alignment", "physics", "quality", "temporal"}


def _defect_line(path: Path) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, start=1) if "DEFECT" in line)


@pytest.mark.parametrize(
    ("name", "message"),
    [("syntax_error.j2", "syntax error"), ("undefined_slot.j2", "undefined slot 'subjcts'"),
     ("misspelt_attribute.j2", "has no attribute 'colour'"), ("no_expected.j2", "has no expected answer"),
     ("duplicate_id.j2", "duplicate question id 'temp.same'"), ("bad_choice.j2", "not one of the options")],
)  # fmt: skip
def test_lint_finds_each_planted_defect_at_its_line(name, message):
    problems = [p for p in lint_templates(BROKEN) if Path(p.file).name == name]
    assert len(problems) == 1, problems
    assert problems[0].line == _defect_line(BROKEN / name)
    assert message in problems[0].message
    assert str(problems[0]).startswith(f"{BROKEN / name}:{problems[0].line}: ")


def test_lint_reports_text_outside_question_calls():
    (problem,) = [p for p in lint_templates(BROKEN) if Path(p.file).name == "stray_text.j2"]
    assert "text outside question() calls" in problem.message


def test_lint_of_a_missing_folder_is_a_template_error(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        lint_templates(tmp_path / "nope")


def test_render_raises_with_file_and_line_for_an_undefined_attribute():
    with pytest.raises(TemplateError, match=r"misspelt_attribute\.j2:3: undefined slot"):
        render_template(str(BROKEN / "misspelt_attribute.j2"), parse_prompt("a red cube"))


def test_render_one_template_from_hand_written_slots():
    slots = normalize_slots({"subjects": [{"shape": "cube", "color": "red"}, "sphere"], "camera": "orbit_left",
                             "relations": [{"relation": "behind", "a": 0, "b": 1}]})  # fmt: skip
    questions = {q.id: q for q in render_template("alignment", slots)}
    assert questions["align.spatial.red_cube.behind.sphere"].text == "Is the red cube behind the sphere?"
    assert questions["align.spatial.red_cube.in_front_of.sphere"].expected == "no"
    assert questions["align.camera.orbit_left"].slots == {"camera": "orbit_left"}
    assert questions["align.caption"].expected == "a video"


@pytest.mark.parametrize(
    ("slots", "message"),
    [({"subject": []}, "unknown slot 'subject'; did you mean 'subjects'"), ({"subjects": [{"color": "red"}]}, "needs a 'noun'"),
     ({"camera": "spin"}, "slot camera is 'spin'"), ({"subjects": ["cube"], "motions": [{"subject": 3}]}, "motions[0].subject")],
)  # fmt: skip
def test_bad_hand_written_slots_name_the_slot(slots, message):
    with pytest.raises(InputError) as err:
        normalize_slots(slots)
    assert message in str(err.value)


def test_sandbox_refuses_unsafe_attribute_access(tmp_path):
    (tmp_path / "physics.j2").write_text(
        '{% call question(id="phys.x", expected="yes") %}{{ question.__class__.__init__.__globals__ }}{% endcall %}\n'
    )
    with pytest.raises(TemplateError, match="physics.j2:1"):
        render_template("physics", normalize_slots({}), tmp_path)


def test_caption_answer_weighs_stop_words_down():
    from prompts.registry import decompose

    caption = next(q for q in decompose("a red cube on the floor") if q.id == "align.caption")
    assert caption.kind == "dense" and caption.expected == "a red cube on the floor"
    assert caption.token_weights == {"a": 0.2, "on": 0.2, "the": 0.2}, "content words keep the critic's default 1.0"
