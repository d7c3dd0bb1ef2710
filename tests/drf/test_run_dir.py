"""The run directory's layout: one object that writers and readers share."""

from drf.config import save_config
from drf.logging import MetricsLogger, read_metrics
from drf.run_dir import RunDir
from drf.sample import SampleRunConfig


def test_writers_put_files_where_readers_look(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_run() and not run.has_training()
    save_config(SampleRunConfig(), run.root)
    assert run.config.is_file() and run.is_run() and not run.has_training()
    with MetricsLogger(run.root) as logger:
        logger.log(1, {"loss": 0.5})
    assert run.has_training() and read_metrics(run.root)[0]["loss"] == 0.5


def test_sample_steps_lists_only_folders_with_videos_in_step_order(tmp_path):
    run = RunDir(tmp_path)
    for step in (10, 2):
        run.samples(step).mkdir(parents=True)
        (run.samples(step) / "000_a.gif").write_bytes(b"GIF89a")
    run.samples(5).mkdir(parents=True)  # an evaluation that wrote nothing yet
    (run.root / "samples" / "step-x").mkdir()
    assert list(run.sample_steps()) == [2, 10]
    assert run.scores(2) == tmp_path / "samples" / "step-2" / "scores.json"
