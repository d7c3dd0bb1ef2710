"""Hand-authored question files, the per-run question cache, the config hash and the decompose entry point."""

import json

import pytest

from drf.errors import ConfigError, InputError, QuestionError
from prompts import QuestionCache, QuestionsConfig, config_hash, decompose
from prompts.config import DECOMPOSER_NAMES
from prompts.fingerprint import file_digest
from prompts.registry import DECOMPOSERS, decompose_all, register_decomposer
from prompts.schema import Question, QuestionSet

YAML_FILE = """\
- prompt: a red cube
  questions:
    - {id: align.object.red_cube, aspect: alignment, kind: binary, text: "Is there a red cube?", expected: "yes"}
    - {id: qual.sharpness, aspect: quality, kind: binary, text: "Is it sharp?", expected: "yes"}
- prompt: a blue sphere
  questions:
    - {id: align.object.blue_sphere, aspect: alignment, kind: binary, text: "Is there a blue sphere?", expected: maybe}
"""


def test_yaml_file_decomposer_finds_prompts_after_normalising_space_and_case(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(YAML_FILE.split("- prompt: a blue sphere")[0])
    qset = decompose("  A  red cube ", QuestionsConfig(decomposer="file", file=str(path)))
    assert qset.ids == ["align.object.red_cube", "qual.sharpness"] and qset.decomposer == "file"


def test_file_errors_name_the_line_of_the_bad_question(tmp_path):
    """The whole file is validated on load, so a bad set fails even a lookup of another prompt."""
    path = tmp_path / "q.yaml"
    path.write_text(YAML_FILE)
    with pytest.raises(QuestionError, match=r"q\.yaml:7: question 'align.object.blue_sphere': field 'expected'"):
        decompose("a red cube", QuestionsConfig(decomposer="file", file=str(path)))
    path.write_text("a blue sphere:\n  - {id: q.a, aspect: quality, kind: binary, text: Sharp, expected: yes}\n"
                    "  - {id: q.b, aspect: quality, kind: binary, text: Bright, expected: maybe}\n")
    with pytest.raises(QuestionError, match=r"q\.yaml:3: question 'q.b': field 'expected'"):
        decompose("a blue sphere", QuestionsConfig(decomposer="file", file=str(path)))


def test_mapping_yaml_and_jsonl_layouts(tmp_path):
    mapping = tmp_path / "m.yml"
    mapping.write_text("a cat:\n  - {id: a.cat, aspect: alignment, kind: binary, text: 'A cat?', expected: 'yes'}\n")
    assert decompose("a cat", QuestionsConfig(decomposer="file", file=str(mapping))).ids == ["a.cat"]
    jsonl = tmp_path / "s.jsonl"
    q = {"id": "a.dog", "aspect": "alignment", "kind": "binary", "text": "A dog?", "expected": "yes"}
    jsonl.write_text(json.dumps({"prompt": "a dog", "questions": [q]}) + "\n\n{broken\n")
    with pytest.raises(QuestionError, match=r"s\.jsonl:3: invalid JSON"):
        decompose("a dog", QuestionsConfig(decomposer="file", file=str(jsonl)))


def test_unknown_prompt_suggests_the_nearest(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(YAML_FILE.split("- prompt: a blue sphere")[0])
    with pytest.raises(QuestionError, match="nearest is 'a red cube'"):
        decompose("a red cubes", QuestionsConfig(decomposer="file", file=str(path)))


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        decompose("a cat", QuestionsConfig(decomposer="file", file=str(tmp_path / "none.yaml")))


def test_cache_decomposes_once_per_prompt_and_config_and_saves_exact_questions(tmp_path):
    calls = []

    def counting(prompt, config):
        calls.append(prompt)
        q = Question(id="c.q", aspect="quality", kind="binary", text="Sharp?", expected="yes")
        return QuestionSet(prompt=prompt, questions=[q], decomposer="counting", config_hash=config_hash(config))

    register_decomposer("counting", counting)
    config = QuestionsConfig(decomposer="counting")
    first = decompose_all(["a cat", "a dog", "a cat"], config, run_dir=tmp_path)
    assert calls == ["a cat", "a dog"]
    again = decompose_all(["a cat", "a dog"], config, run_dir=tmp_path)  # a resumed run reads the file back
    assert calls == ["a cat", "a dog"] and [s.to_dict() for s in again] == [s.to_dict() for s in first[:2]]
    lines = (tmp_path / "questions.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in lines] == ["a cat", "a dog"]
    config.negatives = False  # another config hash: decomposed again
    decompose_all(["a cat"], config, run_dir=tmp_path)
    assert calls == ["a cat", "a dog", "a cat"]
    assert len(QuestionCache(tmp_path / "questions.jsonl")) == 3


def test_registered_decomposer_cache_key_follows_the_inputs_it_names(tmp_path):
    table = tmp_path / "table.txt"
    table.write_text("Sharp")
    calls = []

    def from_table(prompt, config):
        calls.append(table.read_text())
        q = Question(id="t.q", aspect="quality", kind="binary", text=table.read_text() + "?", expected="yes")
        return QuestionSet(prompt=prompt, questions=[q], decomposer="table")

    register_decomposer("table", from_table, inputs=lambda config: {"table": file_digest(table)})
    config = QuestionsConfig(decomposer="table")
    before = config_hash(config)
    decompose_all(["a cat"], config, run_dir=tmp_path)
    table.write_text("Bright")
    assert config_hash(config) != before, "the table is an input of the questions"
    [qset] = decompose_all(["a cat"], config, run_dir=tmp_path)
    assert calls == ["Sharp", "Bright"] and qset.questions[0].text == "Bright?"


def test_config_accepts_exactly_the_registered_decomposers():
    assert set(DECOMPOSERS) <= DECOMPOSER_NAMES and {"rule", "llm", "file"} <= set(DECOMPOSERS)
    assert DECOMPOSER_NAMES <= set(DECOMPOSERS)


def test_cache_can_be_turned_off(tmp_path):
    config = QuestionsConfig(cache=False)
    decompose_all(["a red cube"], config, run_dir=tmp_path)
    assert not (tmp_path / "questions.jsonl").exists()


def test_corrupt_cache_line_is_reported_with_its_line(tmp_path):
    (tmp_path / "questions.jsonl").write_text('{"prompt": "x", "questions": []}\nnot json\n')
    with pytest.raises(QuestionError, match=r"questions\.jsonl:2: invalid JSON"):
        QuestionCache(tmp_path / "questions.jsonl")


def test_config_hash_is_stable_and_sensitive_to_what_changes_questions(tmp_path):
    base = config_hash(QuestionsConfig())
    assert len(base) == 12 and base == config_hash(QuestionsConfig())
    assert config_hash(QuestionsConfig(cache=False)) == base, "caching does not change the questions"
    assert config_hash(QuestionsConfig(aspects=["quality"])) != base
    (tmp_path / "quality.j2").write_text('{% call question(id="q.a", expected="yes") %}A?{% endcall %}\n')
    assert config_hash(QuestionsConfig(templates_dir=str(tmp_path))) != base


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"decomposer": "gpt"}, "decomposer is 'gpt'"), ({"fallback": "retry"}, "fallback is 'retry'"),
     ({"aspects": ["style"]}, "unknown aspect 'style'"), ({"aspects": []}, "no aspect"),
     ({"decomposer": "file"}, "file is empty"), ({"decomposer": "llm"}, "llm_model is empty"),
     ({"max_retries": -1}, "max_retries"), ({"templates_dir": "/no/such/dir"}, "templates_dir")],
)  # fmt: skip
def test_bad_config_values_name_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        QuestionsConfig(**kwargs)


def test_every_config_field_has_help():
    from drf.config import assert_all_fields_documented

    assert_all_fields_documented(QuestionsConfig)


def test_the_generic_loader_reads_and_locates_errors_in_a_questions_section(tmp_path):
    from dataclasses import dataclass, field

    from drf.config import load_config

    @dataclass
    class Run:
        questions: QuestionsConfig = field(default_factory=QuestionsConfig, metadata={"help": "questions"})

    path = tmp_path / "run.yaml"
    path.write_text("questions:\n  aspects: [alignment, quality]\n  aspect_weights: {quality: 0.5}\n")
    run = load_config(path, Run, ["questions.negatives=false"])
    assert run.questions.active_aspects() == ["alignment", "quality"] and run.questions.negatives is False
    path.write_text("questions:\n  decomposer: llm\n")
    with pytest.raises(ConfigError, match=r"run\.yaml:\d+: questions\.llm_model is empty"):
        load_config(path, Run)


def test_question_set_round_trips_through_json_and_yaml():
    qset = decompose("two green cylinders, the camera orbits left")
    assert QuestionSet.from_json(qset.to_json()).to_dict() == qset.to_dict()
    assert QuestionSet.from_yaml(qset.to_yaml()).to_dict() == qset.to_dict()


def test_kinds_keeps_only_the_asked_question_kinds():
    prompt = "a red cube left of a blue sphere on a checkered floor, the camera pans right"
    every = decompose(prompt)
    closed = decompose(prompt, QuestionsConfig(kinds=["binary", "choice"]))
    assert {q.kind for q in every.questions} == {"binary", "choice", "dense"}
    assert [q.id for q in closed.questions] == [q.id for q in every.questions if q.kind != "dense"]
    assert config_hash(QuestionsConfig(kinds=["binary"])) != config_hash(QuestionsConfig())
    with pytest.raises(ConfigError, match=r"kinds has unknown kind 'open'"):
        QuestionsConfig(kinds=["open"])


def test_unquoted_yes_and_no_in_a_yaml_question_file_are_answers(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(
        "- prompt: a red cube\n  questions:\n"
        "    - id: a.cube\n      aspect: alignment\n      kind: binary\n      text: Is there a cube?\n      expected: yes\n"
        "    - id: a.ball\n      aspect: alignment\n      kind: binary\n      text: Is there a ball?\n      expected: no\n"
    )
    qset = decompose("a red cube", QuestionsConfig(decomposer="file", file=str(path)))
    assert [q.expected for q in qset.questions] == ["yes", "no"]
