"""Tables fit the terminal: text columns wrap inside their cells, numbers stay whole and right-aligned, and every
command that prints a table keeps each row's cells in their columns at 80 and 100 columns."""

from __future__ import annotations

import json
import re

import pytest
import torch

from drf.cli import main
from drf.config import describe
from drf.run_dir import RunDir
from drf.sample import SampleRunConfig
from drf.table import format_table, terminal_width, wrap_cell
from drf.video_io import write_video
from trainers.base import before_after
from trainers.paired import summary

HELP = "A long help text that would make the line far wider than any terminal if it were printed on one line"
PROMPT = "a small red cube left of a blue sphere on a checkered floor, the camera pans right"
WIDTHS = (80, 100)


def test_lines_fit_the_width_and_keep_every_word():
    rows = [["model.num_frames", "int", "9", HELP], ["seed", "int", "0", "Seed."]]
    lines = format_table(["key", "type", "default", "meaning"], rows, width=60)
    assert max(len(line) for line in lines) <= 60
    assert " ".join(" ".join(lines).split()).count("terminal") == 1 and "model.num_frames" in lines[2]


def test_numbers_are_right_aligned_and_never_wrapped():
    lines = format_table(["question", "reward"], [[HELP, "-0.649"], ["short", "-12.250"]], numeric=[1], width=40)
    assert max(len(line) for line in lines) <= 40
    assert lines[2].endswith(" -0.649") and any(line.endswith("-12.250") for line in lines)


def test_config_reference_fits_the_terminal(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "90")
    assert main(["config", "reference"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 90


def test_config_reference_shows_the_training_schema_and_names_the_others(capsys):
    assert main(["config", "reference"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "schema drf (drf train, drf: section); others: --schema grpo, nft, sample"
    assert any(line.split()[:1] == ["drf.learning_rate"] for line in lines)


def test_an_identifier_too_long_for_its_column_breaks_after_its_dots():
    assert wrap_cell("align.spatial.red_cube.left_of.blue_sphere", 16) == [
        "align.spatial.", "red_cube.", "left_of.", "blue_sphere"
    ]  # fmt: skip
    assert wrap_cell("interpenetration", 6) == ["interp", "enetra", "tion"]  # no dot or underscore: cut at the width


def test_width_is_columns_else_the_terminal_else_100_when_piped(monkeypatch):
    monkeypatch.setenv("COLUMNS", "83")
    assert terminal_width() == 83
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr("os.get_terminal_size", lambda *_: (_ for _ in ()).throw(OSError("not a tty")))
    assert terminal_width() == 100


def columns(lines: list[str], width: int) -> dict[str, str]:
    """The text of each column of the table in ``lines`` (found by its rule of dashes), joined over its lines with
    whitespace removed; asserts every line fits ``width``, the gaps between columns are blank on every line and
    right-aligned columns end at their column's edge."""
    assert max(len(line) for line in lines) <= width, "\n".join(line for line in lines if len(line) > width)
    at = next(i for i, line in enumerate(lines) if re.fullmatch(r"-+( {2}-+)*", line))
    spans = [m.span() for m in re.finditer(r"-+", lines[at])]
    headers = [lines[at - 1][a:b].strip() for a, b in spans]
    body = []
    for line in lines[at + 1 :]:
        if not line.strip():
            break
        body.append(line.ljust(spans[-1][1]))
    for line in body:
        gaps = [line[b:a] for (_, b), (a, _) in zip(spans, spans[1:])] + [line[spans[-1][1] :]]
        assert all(not gap.strip() for gap in gaps), f"a cell spills out of its column:\n{line}"
    for (a, b), header in zip(spans, headers):
        cells = [line[a:b] for line in body if line[a:b].strip()]
        if lines[at - 1][a:b].startswith(" "):  # a right-aligned (numeric) column
            assert all(not cell.endswith(" ") for cell in cells), header
    return {h: "".join("".join(line[a:b].split()) for line in body) for (a, b), h in zip(spans, headers)}


def joined(values) -> str:
    return "".join("".join(str(v).split()) for v in values)


def run(capsys, monkeypatch, width: int, *args: str) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(list(args)) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("width", WIDTHS)
def test_questions_and_templates_render_fit_with_cells_in_their_columns(width, capsys, monkeypatch):
    render = ("templates", "render", "alignment", "--slot", "subjects=[{noun: cube, color: red}]", "--slot",
              "camera=pan_left")  # fmt: skip
    for command in (("questions", PROMPT), render):
        qset = json.loads("\n".join(run(capsys, monkeypatch, width, *command, "--format", "json")))["questions"]
        table = columns(run(capsys, monkeypatch, width, *command), width)
        assert table["id"] == joined(q["id"] for q in qset)
        assert table["expected"] == joined(q["expected"] for q in qset)
        assert table["weight"] == joined(f"{q['weight']:g}" for q in qset)


@pytest.mark.parametrize("width", WIDTHS)
def test_config_reference_fits_with_cells_in_their_columns(width, capsys, monkeypatch):
    table = columns(run(capsys, monkeypatch, width, "config", "reference", "--schema", "sample"), width)
    assert table["key"] == joined(key for key, *_ in describe(SampleRunConfig))
    assert table["meaning"] == joined(text for *_, text in describe(SampleRunConfig))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video")
    return write_video(folder / "v.gif", torch.rand(5, 3, 28, 28, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("width", WIDTHS)
def test_score_fits_with_cells_in_their_columns_and_says_which_critic(width, video, capsys, monkeypatch):
    monkeypatch.chdir(video.parent)
    prompt = "a purple cylinder next to a white cone"  # outside the toy world: the tiny critic
    records = json.loads("\n".join(run(capsys, monkeypatch, width, "score", video.name, "--prompt", prompt,
                                       "--format", "json")))  # fmt: skip
    lines = run(capsys, monkeypatch, width, "score", video.name, "--prompt", prompt, "--explain")
    assert lines[0].startswith("critic: the tiny untrained critic")
    table = columns(lines, width)
    assert table["id"] == joined(q["id"] for q in records[0]["questions"])
    assert table["p(expected)"] == joined(f"{q['p_expected']:.3f}" for q in records[0]["questions"])
    assert table["explanation"] == joined(["(not shown: an untrained critic's generated text is random tokens)"]
                                          * len(records[0]["questions"]))  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
def test_inspect_summary_fits_with_cells_in_their_columns(width, video, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(video.parent)
    lines = run(capsys, monkeypatch, width, "inspect", video.name, "--prompt", PROMPT, "--no-saliency",
                "--no-explain", "--out", str(tmp_path / "r.html"))  # fmt: skip
    table = columns(lines, width)
    ids = json.loads("\n".join(run(capsys, monkeypatch, width, "questions", PROMPT, "--format", "json")))
    known = "|".join(re.escape(q["id"]) for q in ids["questions"])
    assert re.fullmatch(f"({known}){{5}}", table["lowest-reward question"])


def _record(video: str, reward: float, alignment: float) -> dict:
    by_aspect = {"object_motion": alignment, "camera_motion": alignment}
    oracle = {"alignment": alignment, "alignment_by_aspect": by_aspect, "critic_by_aspect": by_aspect,
              "critic_p": 0.5, "critic_p_by_aspect": by_aspect, "total": alignment}  # fmt: skip
    return {"video": video, "prompt": video, "reward": reward, "aspects": {"alignment": reward}, "oracle": oracle}


@pytest.mark.parametrize("width", WIDTHS)
def test_before_after_fits_with_cells_in_their_columns(width, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    run_dir = RunDir(tmp_path)
    for step, (reward, alignment) in ((0, (-1.0, 0.2)), (60, (-0.5, 0.3))):
        run_dir.samples(step).mkdir(parents=True)
        records = [_record(f"{i}.gif", reward + i / 10, alignment * i) for i in range(3)]
        run_dir.scores(step).write_text(json.dumps(records))
    changes = summary(*(json.loads(run_dir.scores(step).read_text()) for step in (0, 60)))
    table = columns(before_after(tmp_path, 60), width)
    assert table["held-out measure"] == joined(c.name for c in changes)
    assert table["step 60"] == joined(f"{c.after:+.4f}" for c in changes)
    assert table["prompts"] == "3" * len(changes)
