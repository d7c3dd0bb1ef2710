"""`drf questions` and `drf templates`: output formats, exit codes, one-line errors."""

import json
from pathlib import Path

import yaml

from drf.cli import main

BROKEN = Path(__file__).parent / "broken_templates"
PROMPT = "a small red cube left of a blue sphere on a checkered floor, the camera pans right"


def test_questions_table_lists_ids_and_expected_answers(capsys):
    assert main(["questions", PROMPT]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("id "))
    assert header.split() == ["id", "aspect", "kind", "question", "expected", "weight"]
    row = next(line for line in out.splitlines() if line.startswith("align.camera.pan_left "))
    assert row.split()[1:3] == ["alignment", "binary"] and row.split()[-2:] == ["no", "0.5"]


def test_questions_json_and_yaml_are_loadable(capsys):
    assert main(["questions", PROMPT, "--format", "json", "--aspects", "physics"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["decomposer"] == "rule" and {q["aspect"] for q in data["questions"]} == {"physics"}
    assert main(["questions", PROMPT, "--format", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["prompt"] == PROMPT


def test_empty_prompt_is_a_one_line_error(capsys):
    assert main(["questions", "   "]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: prompt is empty") and err.count("\n") == 1


def test_file_decomposer_from_the_cli(tmp_path, capsys):
    path = tmp_path / "q.yaml"
    path.write_text("a cat:\n  - {id: a.cat, aspect: alignment, kind: binary, text: 'A cat?', expected: 'yes'}\n")
    assert main(["questions", "a cat", "--decomposer", "file", "--file", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["questions"][0]["id"] == "a.cat"


def test_lint_exit_codes(capsys):
    assert main(["templates", "lint"]) == 0
    assert "ok: no problems" in capsys.readouterr().out
    assert main(["templates", "lint", str(BROKEN)]) == 1
    out = capsys.readouterr().out
    assert f"{BROKEN / 'no_expected.j2'}:3: question 'qual.missing' has no expected answer" in out


def test_render_with_slots_and_prompt(capsys):
    assert main(["templates", "render", "alignment", "--slot", "subjects=[{noun: cube, color: red}]",
                 "--slot", "camera=pan_left", "--format", "json"]) == 0  # fmt: skip
    ids = [q["id"] for q in json.loads(capsys.readouterr().out)["questions"]]
    assert "align.object.red_cube" in ids and "align.camera.pan_left" in ids and "align.camera.pan_right" in ids
    assert main(["templates", "render", "temporal", "--prompt", "a dog running", "--format", "json"]) == 0
    assert "temp.identity.dog" in capsys.readouterr().out


def test_render_bad_slot_is_a_one_line_error(capsys):
    assert main(["templates", "render", "alignment", "--slot", "subject=cube"]) == 2
    assert "did you mean 'subjects'" in capsys.readouterr().err
    assert main(["templates", "render", "nosuch"]) == 2
    assert "template 'nosuch.j2' not found" in capsys.readouterr().err


def test_too_many_questions_names_the_flag_of_drf_questions(capsys):
    objects = [f"a {size} {colour} {shape}" for size in ("small", "large")
               for colour in ("red", "blue", "green", "yellow") for shape in ("cube", "sphere", "cylinder")]  # fmt: skip
    prompt = ", ".join(objects) + " on a checkered floor"
    assert main(["questions", prompt]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: prompt ") and error.endswith(
        "more than --max-questions=64; shorten or split it, or raise --max-questions"
    ), error
    assert main(["questions", prompt, "--max-questions", "500", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["questions"]) > 64
