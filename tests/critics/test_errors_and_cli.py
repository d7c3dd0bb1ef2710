"""Clear one-line errors for bad critic inputs, and the ``drf score`` command end to end on a tiny critic."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from critics import scorecard
from critics.commands import critic_for
from critics.config import CriticConfig
from critics.registry import load_critic
from critics.scorecard import explanation_shown
from drf.cli import main
from drf.errors import CriticError, InputError, ModelLoadError, TemplateError
from drf.text import readable
from drf.video_io import write_video
from prompts.schema import Question, QuestionSet


def test_unknown_family_names_the_choices():
    with pytest.raises(CriticError, match="unknown critic family 'gpt4v'.*qwen2_vl"):
        load_critic(CriticConfig(family="gpt4v", tiny=True))


def test_missing_checkpoint_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match=r"critic.path '.*nowhere' does not exist; give a local model folder"):
        load_critic(CriticConfig(family="qwen2_vl", path=str(tmp_path / "nowhere")))


def test_question_kind_the_critic_cannot_answer_names_the_question(make_critic):
    q = Question("rank", "quality", "binary", "Rank it.", "yes")
    q.kind = "ranking"  # a kind added to the schema later that this critic does not know
    with pytest.raises(CriticError, match="question 'rank': kind 'ranking' cannot be answered"):
        make_critic("qwen2_vl").score(torch.rand(1, 2, 3, 28, 28), [QuestionSet("p", [q])])


def test_frames_of_the_wrong_shape_or_count_are_input_errors(make_critic, questions):
    critic = make_critic("llava")
    with pytest.raises(InputError, match=r"\[B,T,3,H,W\]"):
        critic.score(torch.rand(2, 3, 28, 28), questions)
    with pytest.raises(InputError, match="one set per video"):
        critic.score(torch.rand(1, 2, 3, 28, 28), questions)


def test_template_errors_name_file_and_line(tmp_path, tiny_dirs):
    bad = tmp_path / "bad.j2"
    bad.write_text("{{ system }}\n{% if kind %}\n")
    with pytest.raises(TemplateError, match="bad.j2:2"):
        load_critic(CriticConfig(family="qwen2_vl", path=str(tiny_dirs["qwen2_vl"]), prompt_template=str(bad)))


def test_template_without_the_vision_placeholder_is_rejected(tmp_path, tiny_dirs, questions):
    no_vision = tmp_path / "novision.j2"
    no_vision.write_text("<|im_start|>user\n{{ question }}<|im_end|>\n<|im_start|>assistant\n")
    critic = load_critic(
        CriticConfig(family="qwen2_vl", path=str(tiny_dirs["qwen2_vl"]), prompt_template=str(no_vision))
    )
    with pytest.raises(TemplateError, match="vision placeholders"):
        critic.score(torch.rand(2, 2, 3, 28, 28), questions)


def _question_file(tmp_path, questions) -> str:
    path = tmp_path / "questions.yaml"
    path.write_text(yaml.safe_dump([questions[0].to_dict()]))
    return str(path)


def _critic_file(tmp_path, tiny_dirs) -> str:
    path = tmp_path / "critic.yaml"
    path.write_text(yaml.safe_dump({"critic": {"family": "llava", "path": str(tiny_dirs["llava"])}}))
    return str(path)


def test_drf_score_prints_an_aligned_table_per_video(tmp_path, tiny_dirs, questions, capsys):
    videos = tmp_path / "videos"
    write_video(videos / "a.gif", torch.rand(3, 3, 28, 28))
    write_video(videos / "b.mp4", torch.rand(3, 3, 28, 28))
    code = main(
        [
            "score",
            str(videos),
            "--prompt",
            questions[0].prompt,
            "--questions",
            _question_file(tmp_path, questions),
            "--critic",
            _critic_file(tmp_path, tiny_dirs),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "a.gif" in out and "b.mp4" in out
    header = next(line for line in out.splitlines() if line.startswith("id "))
    assert header.split() == ["id", "question", "expected", "p(expected)", "reward", "weight"]
    row = next(line for line in out.splitlines() if line.startswith("red_cube"))
    assert row.index("yes") == header.index("expected")  # columns line up


def test_drf_score_json_with_explanations(tmp_path, tiny_dirs, questions, capsys):
    write_video(tmp_path / "v.gif", torch.rand(2, 3, 28, 28))
    code = main(
        [
            "score",
            str(tmp_path / "v.gif"),
            "--prompt",
            questions[0].prompt,
            "--format",
            "json",
            "--explain",
            "--questions",
            _question_file(tmp_path, questions),
            "--critic",
            _critic_file(tmp_path, tiny_dirs),
        ]
    )
    assert code == 0
    [record] = json.loads(capsys.readouterr().out)
    assert [q["id"] for q in record["questions"]] == questions[0].ids
    first = record["questions"][0]
    assert 0 < first["p_expected"] <= 1 and first["reward"] <= 0 and isinstance(first["explanation"], str)


def test_drf_score_says_in_words_when_an_explanation_is_not_text(tmp_path, tiny_dirs, questions, capsys, monkeypatch):
    load = scorecard.load_critic

    def garbling(config):  # a trained critic whose generated bytes do not decode as UTF-8
        critic = load(config)
        critic.explain = lambda frames, sets: [["tioignder\ufffd\ufffd\ufffd" for _ in s] for s in sets]
        return critic

    monkeypatch.setattr(scorecard, "load_critic", garbling)
    write_video(tmp_path / "v.gif", torch.rand(2, 3, 28, 28))
    args = ["score", str(tmp_path / "v.gif"), "--prompt", questions[0].prompt, "--explain", "--questions",
            _question_file(tmp_path, questions), "--critic", _critic_file(tmp_path, tiny_dirs)]  # fmt: skip
    assert main(args) == 0
    assert "\ufffd" not in capsys.readouterr().out
    assert main([*args, "--format", "json"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    sentence = "(not valid text: 3 of 12 characters are bytes that do not decode as UTF-8 or control codes)"
    assert {q["explanation"] for q in record["questions"]} == {sentence}


def test_drf_score_on_an_unreadable_video_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"garbage")
    assert main(["score", str(bad), "--prompt", "a red cube"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "broken.mp4" in err and "\n" not in err


def test_every_critic_config_field_is_documented_and_validated():
    from drf.config import assert_all_fields_documented
    from drf.errors import ConfigError

    assert_all_fields_documented(CriticConfig)
    with pytest.raises(ConfigError, match="critic.quantization is '3bit'"):
        CriticConfig(tiny=True, quantization="3bit").validate()
    with pytest.raises(ConfigError, match="critic.path is empty"):
        CriticConfig().validate()


def test_text_that_is_not_valid_text_is_described_in_words_never_shown():
    assert readable("  The red cube slides left.\n") == "The red cube slides left."
    garbled = readable("tioignder\ufffd\ufffd\x07")  # undecodable bytes, then a control character
    assert garbled == "(not valid text: 3 of 12 characters are bytes that do not decode as UTF-8 or control codes)"
    assert readable(" \n ").startswith("(no text:")
    assert explanation_shown("Yes, it is red.", untrained=True).startswith("(not shown: an untrained critic")


def test_without_a_critic_a_toy_world_prompt_gets_the_shipped_toy_critic():
    from drf.toyworld.assets import toy_critic_frames, toy_critic_path, toy_critic_settings
    from drf.toyworld.grammar import prompt_for
    from drf.toyworld.scene import sample_scenes

    for scene in sample_scenes(8, seed=5):  # what the toy world's grammar writes is in its vocabulary
        choice = critic_for(prompt_for(scene), "")
        assert choice.config.path == str(toy_critic_path()) and not choice.config.tiny, prompt_for(scene)
        assert choice.config.family == toy_critic_settings()["family"] and choice.frames == toy_critic_frames()
        assert choice.description.startswith("the shipped toy critic")
    for prompt in ("a cat chasing a red ball on grass", "a purple cube on a checkered floor", "a red cube, cinematic",
                   "a red cube on a checkered floor, the camera orbits left", ""):  # fmt: skip
        choice = critic_for(prompt, "")
        assert choice.config.tiny and choice.description.startswith("the tiny untrained critic"), prompt
