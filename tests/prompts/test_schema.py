"""Question / QuestionSet validation names the question id and the field; JSON and YAML round-trip exactly."""

import pytest

from drf.errors import QuestionError
from prompts.schema import Question, QuestionSet

GOOD = {"id": "align.count.cube", "aspect": "alignment", "kind": "choice", "text": "How many cubes?",
        "expected": "2", "options": ["1", "2", "3"], "slots": {"noun": "cube", "count": 2}}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [({"aspect": "style"}, "question 'align.count.cube': field 'aspect' is 'style'"),
     ({"kind": "open"}, "field 'kind' is 'open'"),
     ({"expected": "4"}, "field 'expected' is '4', which is not one of the options"),
     ({"options": ["1"]}, "field 'options' needs at least two options"),
     ({"expected": " "}, "field 'expected' must be a non-empty string (every question needs an expected answer)"),
     ({"weight": -1}, "field 'weight' must be finite and >= 0"),
     ({"slots": []}, "field 'slots' must be a mapping"),
     ({"colour": "red"}, "unknown field 'colour'"),
     ({"kind": "binary", "options": [], "expected": "maybe"}, "a binary question expects 'yes' or 'no'"),
     ({"token_weights": {"a": 0.1}}, "field 'token_weights' is only meaningful for dense questions")],
)  # fmt: skip
def test_validation_errors_name_the_question_and_field(change, message):
    with pytest.raises(QuestionError) as err:
        Question.from_dict(GOOD | change, where="set.yaml:4")
    assert str(err.value).startswith("set.yaml:4: ") and message in str(err.value)


def test_binary_answers_are_normalised():
    q = Question(id="q", aspect="quality", kind="binary", text="Sharp?", expected=" Yes ")
    assert q.expected == "yes"


def test_duplicate_ids_and_empty_prompts_are_rejected():
    q = Question.from_dict(GOOD)
    with pytest.raises(QuestionError, match="duplicate id"):
        QuestionSet(prompt="two cubes", questions=[q, q])
    with pytest.raises(QuestionError, match="'prompt' must be a non-empty string"):
        QuestionSet(prompt=" ", questions=[q])


def test_round_trips():
    qset = QuestionSet(prompt="two cubes", questions=[Question.from_dict(GOOD)], decomposer="rule", config_hash="abc")
    assert QuestionSet.from_json(qset.to_json()) == qset
    assert QuestionSet.from_yaml(qset.to_yaml()) == qset


def test_malformed_text_reports_its_line():
    with pytest.raises(QuestionError, match=r"q\.yaml:3: invalid YAML"):
        QuestionSet.from_yaml("prompt: a\nquestions: [\n", where="q.yaml")
    with pytest.raises(QuestionError, match=r"q\.json:1: invalid JSON"):
        QuestionSet.from_json("{", where="q.json")
