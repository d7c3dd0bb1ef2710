"""The HTML report: built for a tiny-model video and a tiny run directory, valid, complete, self-contained."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest
import torch

from drf.cli import main
from drf.report.builder import (
    SaliencyOptions,
    build_report,
    inspect_video,
    report_for_video,
    summarize,
    write_report,
)
from drf.toyworld.assets import toy_critic_path
from prompts.schema import Question, QuestionSet
from tests.report.conftest import PROMPTS, RegionCritic, small_question_set
from tests.report.htmlcheck import parse_html


def _external_urls(parsed) -> list[str]:
    """Attributes that point off the page: an http(s) URL anywhere in the value, or a protocol-relative //host."""
    return [
        f"{tag}[{name}]={value[:60]}"
        for tag, name, value in parsed.attrs
        if re.search(r"(?i)https?://", value) or value.strip().startswith("//")
    ]


def _decode_png(uri: str) -> np.ndarray:
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as img:
        return np.asarray(img.convert("RGB")).astype(np.float32) / 255


@pytest.fixture(scope="module")
def video_report(tiny_critic, tiny_videos):
    path = tiny_videos[0][0]
    qset = small_question_set(PROMPTS[0])
    return report_for_video(path, critic=tiny_critic, question_set=qset, notes=["tiny critic"])


@pytest.fixture(scope="module")
def video_html(video_report) -> str:
    return build_report(video_report)


def test_video_report_is_valid_html_with_every_question_and_its_explanation(video_report, video_html):
    parsed = parse_html(video_html)
    assert parsed.doctype.lower() == "doctype html"
    qset = small_question_set(PROMPTS[0])
    assert [q.id for q in video_report.videos[0].questions] == qset.ids
    for question in video_report.videos[0].questions:
        assert question.id in parsed.text
        assert question.explanation, f"{question.id} has no explanation"
        assert question.explanation in parsed.text  # escaped in the markup, intact as text
    assert PROMPTS[0] in parsed.text


def test_report_is_self_contained(video_html):
    parsed = parse_html(video_html)
    assert _external_urls(parsed) == []
    sources = [value for tag, name, value in parsed.attrs if name in ("src", "href")]
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not {"link", "iframe", "object"} & set(parsed.tags)
    assert all(name != "src" for tag, name, _ in parsed.attrs if tag == "script")


def test_question_table_sorts_by_reward_and_rows_carry_numeric_keys(video_report, video_html):
    header = re.search(r'<th data-sort="num"[^>]*>reward', video_html)
    assert header, "the reward column header is not sortable"
    keys = re.findall(r'<td class="num" data-value="([^"]*)">', video_html)
    assert len(keys) == 3 * len(video_report.videos[0].questions)  # p(expected), reward, weight per row
    assert all(k == "" or np.isfinite(float(k)) for k in keys)
    assert "addEventListener" in video_html


def test_every_question_has_a_saliency_strip_of_the_chosen_frames(video_report):
    video = video_report.videos[0]
    assert len(video.frame_indices) == 4
    frames = _decode_png(video.frames)
    for question in video.questions:
        strip = _decode_png(question.saliency)
        assert strip.shape == frames.shape


def test_heat_map_of_each_question_shows_the_region_its_reward_reads():
    """A synthetic critic reads the top-left quadrant for one question and the bottom-right for the other; the
    overlay of each question row must be red there (the maps reach the right rows)."""
    questions = [
        Question(id="q.top_left", aspect="alignment", kind="binary", text="Top left?", expected="yes"),
        Question(id="q.bottom_right", aspect="quality", kind="binary", text="Bottom right?", expected="yes"),
    ]
    qset = QuestionSet(prompt="a planted pattern", questions=questions)
    critic = RegionCritic(
        {"q.top_left": (1, slice(0, 8), slice(0, 8)), "q.bottom_right": (2, slice(8, 16), slice(8, 16))}
    )
    frames = torch.full((3, 3, 16, 16), 0.5)
    view = inspect_video(critic, frames, qset, title="planted", saliency=SaliencyOptions(kernel=1, frames=1))
    for question, (ys, xs), (other_ys, other_xs) in zip(
        view.questions, ((slice(0, 8), slice(0, 8)), (slice(8, 16), slice(8, 16))),
        ((slice(8, 16), slice(8, 16)), (slice(0, 8), slice(0, 8))),
    ):  # fmt: skip
        image = _decode_png(question.saliency)
        redness = image[..., 0] - image[..., 1:].mean(axis=-1)
        assert redness[ys, xs].mean() > 0.5
        assert abs(redness[other_ys, other_xs]).max() < 0.05
    assert view.questions[0].explanation == "<q.top_left> looks at its region & nothing else"
    assert "&lt;q.top_left&gt; looks at its region &amp; nothing else" in build_report_for(view)


def build_report_for(view) -> str:
    from drf.report.builder import Report

    return build_report(Report(title="planted", source="memory", videos=[view]))


def test_terminal_summary_names_the_lowest_reward_questions(video_report):
    text = summarize(video_report, worst=2)
    rows = sorted(video_report.videos[0].questions, key=lambda q: q.reward)
    assert rows[0].id in text and rows[1].id in text
    assert rows[-1].id not in text
    assert "note: tiny critic" in text


@pytest.fixture(scope="module")
def run_report(tiny_run_dir, tiny_critic):
    path = write_report(tiny_run_dir, critic=tiny_critic, max_videos=2, saliency=SaliencyOptions(frames=2))
    return path, path.read_text(encoding="utf-8")


def test_run_report_is_written_into_the_run_directory(tiny_run_dir, run_report):
    path, html = run_report
    assert path == tiny_run_dir / "report.html"
    parsed = parse_html(html)
    assert _external_urls(parsed) == []
    for prompt in PROMPTS:
        assert prompt in parsed.text
    for qid in small_question_set(PROMPTS[0]).ids:
        assert parsed.text.count(qid) == 2  # both inspected samples answer every recorded question


def test_run_report_has_reward_curves_per_aspect(run_report):
    _, html = run_report
    parsed = parse_html(html)
    # reward/..., eval/reward/..., the judge's eval/oracle/alignment/... and critic vs judge on the judge's aspect
    assert parsed.tags.count("svg") == 4
    assert "reward: critic reward total and per critic aspect" in parsed.text
    assert "eval/reward: critic reward total" in parsed.text  # logged without aspects
    assert "eval/oracle/alignment: total and per aspect" in parsed.text
    for name in ("total", "alignment", "quality"):
        assert name in parsed.text
    # quality has a logged NaN at step 2, drawn as a gap: 1 + 2 + 2 + 1 polylines (total, alignment, quality, eval),
    # then the judge's alignment total and object aspect, then the critic's and the judge's line on "object".
    assert parsed.tags.count("polyline") == 9
    assert "critic vs judge: object" in parsed.text and "critic p(expected)" in parsed.text


def test_run_report_compares_base_and_current_samples_with_their_scores(run_report):
    _, html = run_report
    text = parse_html(html).text
    assert "step 0 (base) · critic reward total -1.000" in text
    assert "step 4 (current) · critic reward total -0.800" in text
    assert "(+0.200)" in text
    assert "judge alignment 0.250" in text and "judge alignment 0.650" in text  # the judge beside the critic
    # The run scores every second frame, so the inspection shows the frames the critic saw in training.
    assert "(frames 0, 2, 4, 6, 8, as scored in training)" in text
    assert "frames 0, 8 (heat maps" in text  # two shown frames, named by their place in the saved video


@pytest.fixture
def loaded_configs(monkeypatch, tiny_critic) -> list:
    """Record the critic configs the CLI loads and hand back the session's tiny critic (loading is the critics
    package's business and tested there; a fresh tiny critic per call would cost seconds)."""
    configs = []

    def load(config):
        configs.append(config)
        return tiny_critic

    monkeypatch.setattr("critics.registry.load_critic", load)
    return configs


def test_cli_inspects_a_run_directory_rebuilding_the_critic_from_its_config(
    tiny_run_dir, tmp_path, capsys, loaded_configs
):
    out = tmp_path / "r.html"
    args = ["inspect", str(tiny_run_dir), "--out", str(out), "--max-videos", "1", "--no-saliency", "--step", "0"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tiny untrained" in printed and f"report -> {out}" in printed
    parsed = parse_html(out.read_text())
    assert "step 0 · 000_" in parsed.text
    assert "Base vs current" not in parsed.text  # step 0 is the base itself
    (config,) = loaded_configs
    assert (config.family, config.tiny, config.max_explain_tokens) == ("qwen2_vl", True, 6)


def test_cli_inspects_a_video_with_a_question_file(tiny_videos, tmp_path, capsys, loaded_configs):
    questions = tmp_path / "q.jsonl"
    questions.write_text(small_question_set(PROMPTS[1]).to_json() + "\n")
    out = tmp_path / "v.html"
    args = ["inspect", str(tiny_videos[4][1]), "--questions", str(questions), "--out", str(out), "--frames", "2",
            "--max-frames", "5"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "note: scored with the shipped toy critic" in printed
    # no --critic and a prompt in the toy world's vocabulary: the shipped toy critic, as the note says
    assert loaded_configs[0].path == str(toy_critic_path()) and not loaded_configs[0].tiny
    parsed = parse_html(out.read_text())
    for qid in small_question_set(PROMPTS[1]).ids:
        assert qid in parsed.text
    assert "frames 0, 8 (heat maps" in parsed.text  # 5 of 9 frames kept; the shown ones keep their video numbers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "7"], "no samples at step 7 (samples/step-7); steps with samples: 0, 4"),
        (["--smooth", "2"], "--smooth is 2; give an odd number"),
        (["--max-frames", "0"], "--max-frames is 0; it must be >= 1"),
    ],
)
def test_cli_errors_are_one_line(tiny_run_dir, capsys, loaded_configs, args, message):
    assert main(["inspect", str(tiny_run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_video_without_prompt_or_questions_asks_for_one(tiny_videos, capsys, loaded_configs):
    assert main(["inspect", str(tiny_videos[0][0])]) == 2
    assert "pass --prompt" in capsys.readouterr().err


def test_cli_missing_target_is_an_input_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.gif")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_reads_the_critic_section_of_a_config_file(tiny_videos, tmp_path, capsys, loaded_configs):
    config = tmp_path / "run.yaml"
    config.write_text("name: x\ncritic:\n  family: llava\n  tiny: true\n  max_explain_tokens: 3\n")
    args = ["inspect", str(tiny_videos[0][0]), "--prompt", PROMPTS[0], "--critic", str(config), "--no-saliency",
            "--no-explain", "--out", str(tmp_path / "r.html")]  # fmt: skip
    assert main(args) == 0
    assert (loaded_configs[0].family, loaded_configs[0].max_explain_tokens) == ("llava", 3)


def test_cli_names_the_nearest_key_for_a_misspelt_critic_field(tiny_videos, tmp_path, capsys):
    config = tmp_path / "critic.yaml"
    config.write_text("family: qwen2_vl\ntiny: true\nmax_explain_token: 3\n")
    assert main(["inspect", str(tiny_videos[0][0]), "--prompt", PROMPTS[0], "--critic", str(config)]) == 2
    assert f"{config}:3: unknown key 'critic.max_explain_token'; did you mean 'critic.max_explain_tokens'?" in (
        capsys.readouterr().err
    )


def test_max_videos_zero_reports_curves_and_comparisons_without_loading_the_critic(tiny_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    (run / "config.yaml").write_text("critic:\n  family: qwen2_5_vl\n  path: /nowhere/7b-critic\n")
    html = write_report(run, max_videos=0).read_text()
    text = parse_html(html).text
    assert "Base vs current samples" in text and "reward: critic reward total and per critic aspect" in text
    assert "align.object" not in text


def test_a_run_whose_reward_is_not_the_critic_names_its_rewards(tiny_run_dir, tmp_path):
    """Curves and before/after captions say which rewards the run trained on, not "critic reward"."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    (run / "config.yaml").write_text("rewards:\n- {name: red, python: 'my:red', differentiable: true}\n"
                                     "- {name: geometry.smoothness, model: toyworld}\n")  # fmt: skip
    text = parse_html(write_report(run, max_videos=0).read_text()).text
    assert "reward: reward total (red + geometry.smoothness)" in text
    assert "(base) · reward total (red + geometry.smoothness)" in text
    assert "critic reward" not in text


def test_a_run_without_samples_still_gets_a_report_that_says_so(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "reward/total": -1.0}\n{"step": 2, "reward/total": -0.5}\n')
    text = parse_html(write_report(run).read_text()).text
    assert "the run has no sample videos yet" in text


def test_each_named_reward_gets_a_curve_when_a_run_lists_several():
    from drf.report.rundir import named_reward_curves

    records = [
        {"step": 1, "reward/total": 0.5, "reward/critic": -0.4, "reward/geometry.smoothness": 0.9,
         "reward/geometry.smoothness/std": 0.1, "time/rewards": 0.3},
        {"step": 2, "reward/total": 0.6, "reward/critic": -0.3, "reward/geometry.smoothness": 0.8,
         "eval/reward/critic": -0.2},
    ]  # fmt: skip
    curves = named_reward_curves(records)
    assert curves == {"reward": {"critic": [(1.0, -0.4), (2.0, -0.3)], "geometry.smoothness": [(1.0, 0.9), (2.0, 0.8)]}}


def test_a_video_is_shown_to_the_critic_on_the_frames_its_training_picked(tiny_videos, tiny_critic):
    qset, options = small_question_set(PROMPTS[1]), SaliencyOptions(enabled=False, frames=16)
    every_second = {"policy": "every_n", "n": 2}  # what the toy critic's manifest records
    report = report_for_video(tiny_videos[4][1], critic=tiny_critic, question_set=qset, saliency=options,
                              explain=False, max_frames=16, frame_policy=every_second)  # fmt: skip
    assert report.videos[0].frame_indices == [0, 2, 4, 6, 8]  # of the video's 9 frames
    report = report_for_video(tiny_videos[4][1], critic=tiny_critic, question_set=qset, saliency=options,
                              explain=False, max_frames=3, frame_policy=every_second)  # fmt: skip
    assert report.videos[0].frame_indices == [0, 4, 8]  # then at most --max-frames of them, evenly spaced
