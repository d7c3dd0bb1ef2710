"""Hub ids resolve from the local Hugging Face cache when offline, for every command that takes a model: tiny models
are written into a temporary cache in the hub's own layout (``models--owner--name/snapshots/<rev>/`` named by
``refs/main``), which stock diffusers and transformers load by id; then drf loads them by id too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from diffusers import WanPipeline
from huggingface_hub import constants

from critics.tiny import build_tiny_critic
from drf.errors import ModelLoadError
from drf.geometry.lgm import SHIPPED_DIR, SHIPPED_LGMS
from drf.hub import check_model_location
from drf.models.tiny import build_tiny_wan_components
from prompts.tiny_lm import save_tiny_chat_lm
from tests.trainers.conftest import ROOT, TINY_CONFIG

REVISION = "0123456789abcdef0123456789abcdef01234567"
REPOS = ("tiny/wan", "tiny/critic", "tiny/chat", "tiny/geometry")


def put_in_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay ``folder`` out as the hub's download of ``repo_id`` at ``main`` would."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """A cache holding a tiny Wan pipeline, Qwen2-VL critic, chat LM and latent geometry model."""
    build = tmp_path_factory.mktemp("models")
    cache = tmp_path_factory.mktemp("hf") / "hub"
    WanPipeline(**build_tiny_wan_components("wan-tiny")).save_pretrained(build / "wan")
    build_tiny_critic("qwen2_vl", build / "critic")
    save_tiny_chat_lm(build / "chat")
    shutil.copytree(SHIPPED_DIR / SHIPPED_LGMS["toyworld"], build / "geometry")
    for repo_id in REPOS:
        put_in_cache(cache, repo_id, build / repo_id.split("/")[1])
    return cache


def offline(cache: Path, command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def drf(*args: str) -> list[str]:
    return [sys.executable, "-m", "drf", *args]


def test_the_cache_is_the_one_stock_diffusers_and_transformers_load_by_id_offline(hub_cache):
    script = (
        "from diffusers import WanPipeline\n"
        "from transformers import AutoModelForCausalLM, Qwen2VLForConditionalGeneration\n"
        "WanPipeline.from_pretrained('tiny/wan')\n"
        "Qwen2VLForConditionalGeneration.from_pretrained('tiny/critic')\n"
        "AutoModelForCausalLM.from_pretrained('tiny/chat')\n"
    )
    offline(hub_cache, [sys.executable, "-c", script])


def test_every_command_that_takes_a_model_loads_hub_ids_from_the_offline_cache(hub_cache, tmp_path):
    prompts = ROOT / "configs" / "prompts" / "tiny_eval.jsonl"
    sampled = offline(hub_cache, drf(
        "sample", str(ROOT / "configs" / "tiny_sample.yaml"), "--set", "model.path=tiny/wan", "--set",
        "model.tiny=null", "--set", f"logging.output_dir={tmp_path}", "--set", "sampling.num_steps=2"))  # fmt: skip
    videos = sorted(tmp_path.rglob("*.gif"))
    assert len(videos) == 2, sampled.stdout

    critic = tmp_path / "critic.yaml"
    critic.write_text("critic:\n  family: qwen2_vl\n  path: tiny/critic\n")
    scored = offline(hub_cache, drf("score", str(videos[0]), "--prompt", "a red cube", "--critic", str(critic),
                                    "--format", "json"))  # fmt: skip
    assert json.loads(scored.stdout)[0]["questions"][0]["p_expected"] is not None

    asked = offline(hub_cache, drf("questions", "a red cube", "--decomposer", "llm", "--llm-model", "tiny/chat",
                                   "--max-retries", "0", "--format", "json"))  # fmt: skip
    assert "a red cube" in asked.stdout

    trained = offline(hub_cache, drf(
        "train", str(TINY_CONFIG), "--set", f"prompts={prompts}", "--set", f"logging.output_dir={tmp_path}",
        "--set", "model.path=tiny/wan", "--set", "model.tiny=null", "--set", "critic.path=tiny/critic",
        "--set", "critic.tiny=false", "--set", "questions.decomposer=llm", "--set", "questions.llm_model=tiny/chat",
        "--set", "questions.max_new_tokens=8", "--set", "questions.max_retries=0",
        "--set", "rewards=[{name: critic}, {name: geometry.smoothness, weight: 0.1, model: tiny/geometry}]",
        "--set", "drf.steps=1", "--set", "logging.sample_every=0", "--set", "drf.export=false",
        "--set", "logging.report=false"))  # fmt: skip
    assert "done:" in trained.stdout, trained.stdout[-2000:]


def test_a_hub_id_neither_cached_nor_reachable_names_where_drf_looked_and_how_to_fill_the_cache(
    hub_cache, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    assert check_model_location("tiny/critic", "critic.path", "config.json") == (
        hub_cache / "models--tiny--critic" / "snapshots" / REVISION
    )
    with pytest.raises(ModelLoadError, match=r"^model.path 'tiny/absent' is a hub id, but the hub is offline here "
                       rf"\(HF_HUB_OFFLINE\) and it is not in the local Hugging Face cache {hub_cache}; fill the "
                       r"cache on a machine that reaches the hub \(hf download tiny/absent, with the same HF_HOME or "
                       r"HF_HUB_CACHE\) or point at a local model folder$"):  # fmt: skip
        check_model_location("tiny/absent", "model.path", "model_index.json")
    with pytest.raises(ModelLoadError, match=r"^model.path 'tiny/critic': its cached snapshot .* has no "
                       r"model_index.json; download the whole repository into the cache \(hf download tiny/critic\)$"):
        check_model_location("tiny/critic", "model.path", "model_index.json")
