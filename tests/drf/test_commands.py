"""``drf sample`` and ``drf config show`` work from the shipped config and fail in one line on bad input."""

from __future__ import annotations

from drf.cli import main
from drf.video_io import read_video


def test_sample_writes_videos_and_the_resolved_config(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    code = main(["sample", "configs/tiny_sample.yaml", "--out", str(out), "--set", "sampling.num_steps=2"])
    assert code == 0
    videos = sorted(out.glob("*.gif"))
    assert [p.name for p in videos] == [
        "000_a_red_cube_on_a_checkered_floor.gif",
        "001_a_blue_sphere_rolling_to_the_left.gif",
    ]
    assert read_video(videos[0]).shape == (9, 3, 32, 32)
    assert "num_steps: 2" in (out / "config.yaml").read_text()


def test_sample_from_a_training_config_draws_its_base_model_for_the_given_prompt(tmp_path, capsys) -> None:
    out = tmp_path / "tour"
    args = ["sample", "configs/tiny_drf.yaml", "--prompt", "a green sphere", "--out", str(out)]
    assert main([*args, "--set", "sampling.num_steps=2"]) == 0
    assert [p.name for p in out.glob("*.gif")] == ["000_a_green_sphere.gif"]
    assert "sampled 1 video (9x32x32, 2 steps)" in capsys.readouterr().out
    assert main(args[:2] + ["--out", str(out)]) == 2  # a training config's prompts are a file: --prompt is needed
    assert "configs/tiny_drf.yaml is a training config" in capsys.readouterr().err
    output_dir = tmp_path / "runs"
    assert main([*args[:4], "--set", f"logging.output_dir={output_dir}", "--set", "sampling.num_steps=2"]) == 0
    assert [p.name for p in output_dir.iterdir()] == ["tiny_drf_samples"]  # never into the run's own directory


def _sets(*settings: str) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def test_sample_runs_the_ltx_family_from_the_same_config(tmp_path) -> None:
    out = tmp_path / "ltx"
    ltx = _sets("model.family=ltx", "model.tiny=ltx-tiny", "model.height=32", "model.width=64", "model.num_frames=17")
    assert main(["sample", "configs/tiny_sample.yaml", "--out", str(out), *ltx, *_sets("sampling.num_steps=2")]) == 0
    videos = sorted(out.glob("*.gif"))
    assert len(videos) == 2 and read_video(videos[0]).shape == (17, 3, 32, 64)


def test_sample_rejects_a_size_the_family_cannot_make_in_one_line(tmp_path, capsys) -> None:
    ltx = _sets("model.family=ltx", "model.tiny=ltx-tiny", "model.num_frames=9", "model.height=48")
    assert main(["sample", "configs/tiny_sample.yaml", "--out", str(tmp_path), *ltx]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.height must be a multiple of 32 (got 48); try 32 or 64" in err


def test_config_show_prints_overrides_and_rejects_unknown_keys(capsys) -> None:
    assert main(["config", "show", "configs/tiny_sample.yaml", "--set", "sampling.num_steps=3"]) == 0
    assert "num_steps: 3" in capsys.readouterr().out
    assert main(["config", "show", "configs/tiny_sample.yaml", "--set", "sampling.num_step=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "error: --set sampling.num_step=3: unknown key 'sampling.num_step'; did you mean 'sampling.num_steps'?"
    )


def test_unreadable_config_is_one_line(tmp_path, capsys) -> None:
    assert main(["config", "show", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.yaml" in err


def test_train_reports_a_yaml_syntax_error_at_its_line(tmp_path, capsys):
    from drf.cli import main

    path = tmp_path / "run.yaml"
    path.write_text("drf:\n  steps: 2\nmodel: [tiny\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "invalid YAML" in err and "no recipe section" not in err
