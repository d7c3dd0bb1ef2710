"""The T2V probes figure: drawn from a run's probes, read back from its resumable state while it trains."""

import pytest
import torch
from PIL import Image

from drf.cli import main
from drf.errors import InputError
from drf.toyworld.assets import TRAIN_STATE_DIR
from drf.toyworld.figures import PROBE_PANEL, probes_figure, t2v_probes


def _probes(n: int) -> list[dict]:
    return [{"step": 100 * i, "cpu_minutes": 10.0 * i, "text_gain": 0.1 * i, "object_present": 0.05 * i,
             "alignment": 0.1, "loss_by_sigma": {str(s): s + 1.0 - 0.1 * i for s in (0.1, 0.3, 0.5, 0.7, 0.9)}}
            for i in range(n)]  # fmt: skip


def test_probes_figure_draws_three_panels_with_their_curves(tmp_path):
    path = probes_figure(_probes(4), tmp_path / "probes.png")
    image = Image.open(path).convert("RGB")
    assert image.size[1] == PROBE_PANEL[1] + 60
    pixels = torch.tensor(list(image.getdata())).view(image.size[1], image.size[0], 3)
    # The first series' colour (#1f77b4) appears in each of the three panels.
    blue = (pixels == torch.tensor([0x1F, 0x77, 0xB4])).all(-1)
    third = image.size[0] // 3
    assert all(blue[:, i * third : (i + 1) * third].any() for i in range(3))


def test_probes_are_read_from_a_running_state_and_an_empty_run_is_one_line(tmp_path, capsys):
    state = tmp_path / TRAIN_STATE_DIR / "t2v.pt"
    state.parent.mkdir()
    torch.save({"probes": _probes(2)}, state)
    assert t2v_probes(tmp_path) == _probes(2)
    with pytest.raises(InputError, match="no T2V probes to draw"):
        probes_figure([], tmp_path / "none.png")
    assert main(["toyworld", "figures", "--root", str(tmp_path), "--only", "probes,sky", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --only probes,sky: unknown figure 'sky'; choose from vae, t2v, probes\n"
