"""DRF configs: every field documented, shipped configs load, and mistakes fail with one located line."""

from __future__ import annotations

import sys

import pytest

from drf.cli import main
from drf.config import assert_all_fields_documented, load_config
from drf.errors import ConfigError, InputError
from tests.trainers.conftest import ROOT
from trainers.config import TrainerConfig
from trainers.data import load_prompt_splits, prompt_index, read_prompts
from trainers.drf import DRFRunConfig
from trainers.optim import build_optimizer


def test_every_drf_config_field_is_documented():
    assert_all_fields_documented(DRFRunConfig)


@pytest.mark.parametrize(
    "name", ["tiny_drf.yaml", "wan2.1_t2v_1.3b__qwen2.5_vl_7b.yaml", "wan2.1_t2v_1.3b__qwen2.5_vl_3b.yaml"]
)
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / name, DRFRunConfig)
    assert (ROOT / cfg.prompts).is_file()
    if name.startswith("wan2.1"):  # the one-GPU recipe: LoRA, small window, checkpointing, 8-bit Adam
        assert cfg.drf.trainable == "lora" and cfg.sampling.grad_window.k <= 2
        assert cfg.drf.gradient_checkpointing and cfg.drf.optimizer == "adamw8bit"
        assert cfg.critic.dtype == "bfloat16" or cfg.critic.quantization == "4bit"


def test_penalties_need_lora():
    with pytest.raises(ConfigError, match=r"drf\.kl_weight needs trainable: lora"):
        load_config(ROOT / "configs" / "tiny_drf.yaml", DRFRunConfig, ["drf.trainable=full"])


def test_adamw8bit_without_bitsandbytes_says_how_to_install(monkeypatch):
    import torch

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # an import of it now fails as if not installed
    with pytest.raises(ConfigError) as err:
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], TrainerConfig(optimizer="adamw8bit"), "drf")
    assert str(err.value) == "drf.optimizer 'adamw8bit' needs bitsandbytes: pip install 'drf[quant]'"


def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\na red cube\n\n a blue sphere \n")
    assert read_prompts(txt).train == ["a red cube", "a blue sphere"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a", "split": "train"}\n{"prompt": "b", "split": "eval"}\n{"prompt": "c"}\n')
    splits = load_prompt_splits(str(jsonl), str(txt))
    assert splits.train == ["a", "c"] and splits.eval == ["b", "a red cube", "a blue sphere"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"p\.jsonl:2: invalid JSON"),
        ('{"prompt": ""}', r"p\.jsonl:2: 'prompt' must be a non-empty string"),
        ('{"prompt": "x", "split": "test"}', r"p\.jsonl:2: 'split' is 'test'; use 'train' or 'eval'"),
    ],
)
def test_bad_prompt_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(InputError, match=message):
        read_prompts(path)


def test_data_order_is_a_permutation_per_epoch():
    first_epoch = [prompt_index(3, i, 5) for i in range(5)]
    second_epoch = [prompt_index(3, i, 5) for i in range(5, 10)]
    assert sorted(first_epoch) == sorted(second_epoch) == list(range(5))
    assert first_epoch != second_epoch


def test_train_without_recipe_section_is_a_one_line_error(tmp_path, capsys):
    config = tmp_path / "sample.yaml"
    config.write_text("name: x\nmodel:\n  tiny: wan-tiny\n")
    assert main(["train", str(config)]) == 2
    assert "no recipe section to train with; add a top-level 'drf:'" in capsys.readouterr().err
