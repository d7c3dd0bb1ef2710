"""The llm decomposer validates model output, retries with the error, then falls back or fails clearly."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drf.errors import ModelLoadError, QuestionError
from prompts.config import QuestionsConfig
from prompts.llm import decompose_llm, extract_json, parse_questions
from prompts.tiny_lm import save_tiny_chat_lm

PROMPT = "a red cube rolls left"
VALID = json.dumps({"questions": [
    {"id": "align.object.red_cube", "aspect": "alignment", "kind": "binary", "text": "Is there a red cube?",
     "expected": "yes"},
    {"id": "align.motion.red_cube", "aspect": "alignment", "kind": "choice", "text": "Where does the cube roll?",
     "expected": "left", "options": ["left", "right"]},
    {"id": "qual.sharpness", "aspect": "quality", "kind": "binary", "text": "Is it sharp?", "expected": "yes"},
]})  # fmt: skip
INVALID = json.dumps({"questions": [{"id": "q1", "aspect": "alignment", "kind": "binary", "text": "Red?",
                                     "expected": "maybe"}]})  # fmt: skip
TRUNCATED = VALID[: len(VALID) // 2]


class Scripted:
    """A fake generator answering from a script and keeping every conversation it was shown."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.seen: list[list[dict]] = []

    def __call__(self, messages):
        self.seen.append(messages)
        return self.answers.pop(0)


def _config(**kw) -> QuestionsConfig:
    return QuestionsConfig(decomposer="llm", llm_model="scripted", **kw)


def test_valid_json_becomes_a_validated_question_set():
    fake = Scripted("Sure! ```json\n" + VALID + "\n```")
    qset = decompose_llm(PROMPT, _config(), generator=fake)
    assert qset.decomposer == "llm" and len(qset.config_hash) == 12
    assert qset.ids == ["align.object.red_cube", "align.motion.red_cube", "qual.sharpness"]
    assert qset.questions[0].template == "llm"
    assert len(fake.seen) == 1
    assert PROMPT in fake.seen[0][-1]["content"]


def test_invalid_then_truncated_then_valid_uses_two_retries_with_the_error_fed_back():
    fake = Scripted(INVALID, TRUNCATED, VALID)
    qset = decompose_llm(PROMPT, _config(max_retries=2), generator=fake)
    assert qset.decomposer == "llm" and len(fake.seen) == 3
    assert "'maybe'" in fake.seen[1][-1]["content"], "the schema error is sent back"
    assert "cut off" in fake.seen[2][-1]["content"]
    assert fake.seen[2][-2] == {"role": "assistant", "content": TRUNCATED}


def test_exhausted_retries_fall_back_to_the_rule_decomposer():
    fake = Scripted(INVALID, "no json here")
    qset = decompose_llm(PROMPT, _config(max_retries=1), generator=fake)
    assert qset.decomposer == "rule (llm fallback)"
    assert "align.motion.red_cube.left" in qset.ids
    assert len(fake.seen) == 2


def test_exhausted_retries_raise_when_fallback_is_error():
    fake = Scripted(TRUNCATED, TRUNCATED, TRUNCATED)
    with pytest.raises(QuestionError, match=r"no valid questions .* in 3 attempts; last problem: the JSON is cut off"):
        decompose_llm(PROMPT, _config(max_retries=2, fallback="error"), generator=fake)


@pytest.mark.parametrize(
    ("text", "message"),
    [("[]", "empty"), ('{"q": 1}', "expected {\"questions\""), ("nothing", "no JSON"),
     ('{"questions": [{"id": "a", "aspect": "style", "kind": "binary", "text": "t", "expected": "yes"}]}', "'aspect'"),
     ('{"questions": [{"id": "a", "aspect": "quality", "kind": "binary", "text": "t", "expected": "yes"},'
      ' {"id": "a", "aspect": "quality", "kind": "binary", "text": "u", "expected": "no"}]}', "duplicate id")],
)  # fmt: skip
def test_parse_errors_name_the_problem(text, message):
    with pytest.raises(QuestionError) as err:
        parse_questions(text, PROMPT, ["alignment", "physics", "quality", "temporal"])
    assert message in str(err.value)


def test_questions_of_unrequested_aspects_are_dropped():
    kept = parse_questions(VALID, PROMPT, ["quality"])
    assert [q.id for q in kept] == ["qual.sharpness"]


def test_extract_json_skips_chatter():
    assert extract_json('Here you go: {"questions": []} bye') == {"questions": []}


def test_tiny_model_loaded_from_a_folder_drives_retries_into_the_fallback(tmp_path):
    path = save_tiny_chat_lm(tmp_path / "tiny-lm")
    config = QuestionsConfig(decomposer="llm", llm_model=str(path), max_new_tokens=16, max_retries=1)
    qset = decompose_llm(PROMPT, config)
    assert qset.decomposer == "rule (llm fallback)", "a random tiny model cannot write valid JSON"
    assert len(qset) > 0


def test_missing_model_folder_is_a_model_load_error(tmp_path):
    config = QuestionsConfig(decomposer="llm", llm_model=str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match=r"questions.llm_model .*missing. does not exist; give a local model "
                       r"folder or a hub id"):
        decompose_llm(PROMPT, config)


@pytest.mark.parametrize("cut", [10, 57, 120, len(VALID) - 2])
def test_truncated_answers_are_reported_as_cut_off(cut):
    with pytest.raises(QuestionError, match="cut off"):
        extract_json(VALID[:cut])


def test_escaped_quotes_do_not_hide_a_real_syntax_error():
    with pytest.raises(QuestionError, match="invalid JSON"):
        extract_json('{"a": "say \\"hi\\"" "b": 1}')


_JSONISH = st.one_of(
    st.text(max_size=200),
    st.sampled_from([VALID, INVALID, TRUNCATED]).flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n])),
)


@settings(max_examples=200, deadline=None)
@given(_JSONISH)
def test_any_model_output_is_either_valid_questions_or_a_question_error(text):
    try:
        questions = parse_questions(text, PROMPT, ["alignment", "physics", "quality", "temporal"])
    except QuestionError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert questions and all(q.expected for q in questions)
