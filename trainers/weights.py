"""Which weights train: a LoRA adapter (peft) or the transformer parameters a config names; adapters switched off
for the frozen reference model."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drf.errors import ConfigError
from drf.models.base import Experts
from trainers.config import TrainerConfig


def setup_trainable(transformer: nn.Module, cfg: TrainerConfig, section: str) -> list[nn.Parameter]:
    """Freeze ``transformer`` except a LoRA adapter (``add_adapter``) or the parameters named by ``full_modules``.

    LoRA weights are kept in float32 whatever the model dtype (peft casts the input of each LoRA branch), so small
    updates are not lost to bf16 rounding. Returns the trainable parameters in a fixed order.
    """
    transformer.requires_grad_(False)
    if cfg.trainable == "lora":
        from peft import LoraConfig

        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_target_modules),
            init_lora_weights=True,
        )
        try:
            transformer.add_adapter(lora)
        except ValueError as err:
            first = str(err).strip().splitlines()[0]
            raise ConfigError(f"{section}.lora_target_modules {cfg.lora_target_modules}: {first}") from None
        params = [p for p in transformer.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()
        return params
    names = [name for name, _ in transformer.named_parameters()]
    chosen = {n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in cfg.full_modules)}
    if not chosen:
        raise ConfigError(
            f"{section}.full_modules {cfg.full_modules} matches no transformer parameter; names look like {names[0]!r}"
        )
    params = []
    for name, p in transformer.named_parameters():
        if name in chosen:
            p.requires_grad_(True)
            params.append(p)
    return params


def choose_experts(generator: Any, setting: str, touched: set[str]) -> list[str]:
    """The experts (pipeline names) a run trains under ``model.train_experts``; ``touched``: those that run the steps
    the recipe trains. A one-line ConfigError when the choice cannot train anything or names a missing expert."""
    names = generator.expert_names()
    labels = generator.expert_labels  # model.train_experts value -> pipeline name
    if len(names) == 1:
        if setting != "auto":
            raise ConfigError(f"model.train_experts is {setting!r} but this model has one transformer (no second "
                              "expert); leave it auto")  # fmt: skip
        return names
    wanted = touched if setting == "auto" else set(names) if setting == "both" else {labels[setting]}
    if not wanted & touched:
        runs = " and ".join(_expert_label(labels, n) for n in names if n in touched)
        raise ConfigError(f"model.train_experts is {setting!r} but the steps this recipe trains run on the {runs} "
                          "expert only, so nothing would learn; set it to auto or move the window")  # fmt: skip
    return [n for n in names if n in wanted]


def _expert_label(labels: Mapping[str, str], name: str) -> str:
    return next(label for label, pipe_name in labels.items() if pipe_name == name)


def load_adapter_weights(
    transformer: nn.Module, path: str | Path, files: Mapping[str, str], labels: Mapping[str, str]
) -> None:
    """Copy a LoRA written by ``save_lora`` (a run's ``lora/``, or its safetensors file) into the adapter a LoRA run
    trains, so the run starts where that one ended; rank and targets must match (``model.lora`` otherwise errs).
    ``files``: the generator's ``lora_files`` (pipeline name -> file in the folder); with several experts trained,
    each expert's file goes into its own adapter (``labels``: the generator's ``expert_labels``, for messages)."""
    if isinstance(transformer, Experts):
        for name, module in transformer.items():
            weights = files[name]
            if not (Path(path) / weights).is_file():
                raise ConfigError(f"model.lora {str(path)!r}: no {weights} there for the {_expert_label(labels, name)} "
                                  "expert; give a run's lora/ folder from a run that trained it")  # fmt: skip
            load_adapter_weights(module, Path(path) / weights, files, labels)
        return
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = files["transformer"]
    file = Path(path) / weights if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise ConfigError(f"model.lora {str(path)!r}: no {weights} there; give a run's lora/ folder")
    state = {k.removeprefix("transformer."): v for k, v in load_file(str(file)).items()}
    own = {k: v.shape for k, v in transformer.state_dict().items() if "lora_" in k}
    for key, value in state.items():
        mine = next((shape for name, shape in own.items() if name.replace(".default", "") == key), None)
        if mine is None or mine != value.shape:
            have = "no such module" if mine is None else f"shape {tuple(mine)} here"
            raise ConfigError(
                f"model.lora {str(path)!r}: {key} has shape {tuple(value.shape)} but the trained adapter has {have}; "
                "set lora_rank and lora_target_modules as the LoRA was trained"
            )
    set_peft_model_state_dict(transformer, state)


def by_expert(module: nn.Module, whole: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Weights gathered from the trained ``module``, per expert (pipeline name), keyed as in that expert's own
    ``named_parameters``."""
    if not isinstance(module, Experts):
        return {"transformer": whole}
    return {
        name: {k.removeprefix(f"{name}."): v for k, v in whole.items() if k.startswith(f"{name}.")} for name in module
    }


def save_full(module: nn.Module, directory: str | Path, whole: dict[str, torch.Tensor] | None = None) -> None:
    """The fully fine-tuned transformer (each expert in its own subfolder) as a diffusers model folder.

    ``whole``: a sharded run's weights gathered onto this process (``trainers.distributed.full_state_dict``), written
    with the module's config in the layout ``save_pretrained`` uses, since the sharded module holds 1/N of each."""
    if whole is None:
        module.save_pretrained(directory)
        return
    from huggingface_hub import save_torch_state_dict

    experts = isinstance(module, Experts)
    for name, own in by_expert(module, whole).items():
        part, out = (module[name], Path(directory) / name) if experts else (module, Path(directory))
        part.save_config(out)
        config = out / "config.json"
        # FSDP2 renamed the class (FSDPWanTransformer3DModel); the folder must name the class that loads it.
        saved = json.loads(config.read_text(encoding="utf-8"))
        saved["_class_name"] = saved["_class_name"].removeprefix("FSDP")
        config.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        # Own storage per tensor: gathered tensors can be views of one buffer, which safetensors refuses.
        own = {k: v.contiguous().clone() for k, v in own.items()}
        save_torch_state_dict(own, out, filename_pattern="diffusion_pytorch_model{suffix}.safetensors")


def count_parameters(params: Sequence[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


@contextmanager
def adapters_disabled(module: nn.Module) -> Iterator[None]:
    """Run ``module`` as the frozen base model: its LoRA adapters are switched off inside the block."""
    module.disable_adapters()
    try:
        yield
    finally:
        module.enable_adapters()
