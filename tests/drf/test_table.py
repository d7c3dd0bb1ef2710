"""Tables fit the terminal: text columns wrap, numbers stay whole and right-aligned."""

from drf.cli import main
from drf.table import format_table

HELP = "A long help text that would make the line far wider than any terminal if it were printed on one line"


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
