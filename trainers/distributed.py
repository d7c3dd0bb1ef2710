"""Processes and precision: the ``Accelerator``, data-parallel gradient averaging or FSDP2 sharding, clipping.

Data parallel (``accelerate launch``, the default): gradients are averaged with one all-reduce per optimiser step
instead of wrapping the denoiser in ``DistributedDataParallel``; the generator keeps calling its own modules, the
sampling chain's per-step checkpointing stays untouched, and the same reduction carries the non-finite flag to every
process.

Sharded (``accelerate launch`` with an FSDP config, ``fsdp_version: 2``): the trainable transformer is split with
FSDP2 ``fully_shard``, one unit per transformer block plus the rest at the root, each process holding 1/N of every
weight, gradient and optimiser state. The generator still calls the same module objects (``fully_shard`` works in
place); FSDP gathers a block's weights for its forward and reduce-scatters its gradients in backward, so gradients
arrive averaged and only the non-finite flag is reduced here. Every process must then run the transformer the same
number of times, so evaluation and export run on all processes (``trainers.base``). The frozen critic stays
replicated: it holds no gradient or optimiser state, and sharding it would add an all-gather to every reward.

Hybrid (HSDP): FSDP2 over a 2-D device mesh, each weight sharded over the processes of one group (a machine) and
replicated across groups, so the all-gathers of every forward stay on a machine's fast links and only the gradient
all-reduce crosses machines. accelerate's FSDP2 form asks for it with ``parallelism_config`` (``dp_replicate_size`` x
``dp_shard_size``); FSDP1's ``fsdp_sharding_strategy: HYBRID_SHARD`` (shard within each machine) is honoured too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from drf.errors import ConfigError


def make_accelerator(mixed_precision: str) -> Any:
    """An ``Accelerator`` for devices, process ranks and autocast; trackers belong to ``drf.logging.MetricsLogger``."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision=mixed_precision)


def fsdp_plugin(accelerator: Any) -> Any | None:
    """The FSDP settings of this launch (accelerate's ``FullyShardedDataParallelPlugin``), or None for data parallel.

    accelerate builds the plugin for GPUs only: on CPU it runs the processes as plain multi-CPU and ignores the FSDP
    request, so there the plugin is rebuilt from the ``FSDP_*`` environment that ``accelerate launch`` exported; the
    same settings then shard on either device (the CPU/gloo tests run this path).
    """
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, parse_flag_from_env

    if accelerator.num_processes == 1:
        return None
    if accelerator.distributed_type == DistributedType.FSDP:
        plugin = accelerator.state.fsdp_plugin
    elif parse_flag_from_env("ACCELERATE_USE_FSDP"):
        plugin = FullyShardedDataParallelPlugin()
    else:
        return None
    if plugin.fsdp_version != 2:
        raise ConfigError(
            f"the accelerate config asks for FSDP version {plugin.fsdp_version}; drf shards with FSDP2: set "
            "fsdp_config.fsdp_version: 2 (see configs/accelerate/)"
        )
    return plugin


@dataclass(frozen=True)
class Layout:
    """How a launch's processes hold the trainable transformer: ``replicas`` groups, each holding one whole copy split
    over ``shards`` processes (data parallel: shards 1; FSDP: replicas 1; hybrid: both above 1)."""

    processes: int
    machines: int
    replicas: int
    shards: int

    def describe(self) -> str:
        """The start-up banner's line."""
        where = f"{self.processes} process{'es' if self.processes > 1 else ''}"
        where += f" on {self.machines} machines" if self.machines > 1 else ""
        if self.processes == 1:
            return f"processes: {where}"
        if self.shards == 1:
            return f"processes: {where}, data parallel (a whole copy of the trainable weights on each)"
        if self.replicas == 1:
            return f"processes: {where}, FSDP2: the trainable transformer sharded over all {self.shards}"
        return (
            f"processes: {where}, FSDP2 hybrid: the trainable transformer sharded over {self.shards} processes, "
            f"replicated over {self.replicas} groups"
        )


# FSDP1's strategies that FSDP2 expresses: one shard group of every process, or one per machine.
_STRATEGIES = ("FULL_SHARD", "HYBRID_SHARD")


def layout_of(accelerator: Any, plugin: Any) -> Layout:
    """The launch's :class:`Layout`: data parallel without an FSDP ``plugin``; else the hybrid shape the accelerate
    config asks for (``parallelism_config``, or ``fsdp_sharding_strategy: HYBRID_SHARD``), else FSDP over all.
    Machines are counted from ``LOCAL_WORLD_SIZE``, which ``accelerate launch`` and torchrun set per machine."""
    world = accelerator.num_processes
    machines = max(world // int(os.environ.get("LOCAL_WORLD_SIZE", world)), 1)
    if plugin is None:
        return Layout(world, machines, world, 1)
    return Layout(world, machines, *_hybrid_sizes(accelerator, world, machines))


def _hybrid_sizes(accelerator: Any, world: int, machines: int) -> tuple[int, int]:
    """(replica groups, processes per group) of a sharded launch; a shape the launch cannot take is refused."""
    from accelerate.parallelism_config import ParallelismConfig

    # accelerate builds the parallelism config on GPUs only; on CPU it is read from the environment it exports.
    config = getattr(accelerator, "parallelism_config", None) or ParallelismConfig()
    if max(config.tp_size, config.cp_size, config.sp_size) > 1:
        raise ConfigError(
            "the accelerate config's parallelism_config asks for tensor, context or sequence parallelism; drf "
            "shards data-parallel only: set parallelism_config_tp_size, _cp_size and _sp_size to 1"
        )
    strategy = os.environ.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
    if config.dp_replicate_size > 1 or config.dp_shard_size > 1:
        replicas, shards = config.dp_replicate_size, config.dp_shard_size
        asked = f"parallelism_config dp_replicate_size {replicas} x dp_shard_size {shards}"
    elif strategy not in _STRATEGIES:
        raise ConfigError(
            f"fsdp_sharding_strategy {strategy} has no FSDP2 form in drf; use FULL_SHARD, HYBRID_SHARD (shard within "
            "each machine, replicate across machines), or parallelism_config dp_replicate_size x dp_shard_size"
        )
    elif strategy == "HYBRID_SHARD":
        replicas, shards = machines, world // machines
        asked = f"fsdp_sharding_strategy HYBRID_SHARD ({machines} machines x {shards} processes)"
    else:
        return 1, world
    if replicas * shards != world or shards < 2:
        raise ConfigError(
            f"the accelerate config asks for {asked} = {replicas * shards} processes in groups of {shards}, but the "
            f"launch has {world}; set dp_replicate_size x dp_shard_size to {world} with dp_shard_size of 2 or more"
        )
    return replicas, shards


def shard_mesh(accelerator: Any, layout: Layout) -> Any:
    """The 2-D (replicate, shard) device mesh of a hybrid layout, shard groups of consecutive ranks (one machine's
    processes); None for plain FSDP, whose default mesh spans every process. Reuses the mesh accelerate built for
    its parallelism config (GPUs) instead of opening a second set of process groups."""
    if layout.replicas == 1:
        return None
    built, config = getattr(accelerator, "torch_device_mesh", None), getattr(accelerator, "parallelism_config", None)
    if built is not None and config is not None and config.dp_replicate_enabled:
        return built[tuple(config.fsdp_dim_names)]
    from torch.distributed.device_mesh import init_device_mesh

    shape = (layout.replicas, layout.shards)
    return init_device_mesh(accelerator.device.type, shape, mesh_dim_names=("dp_replicate", "dp_shard"))


def shard(module: nn.Module, plugin: Any, mesh: Any = None) -> None:
    """Shard ``module`` in place with FSDP2: each transformer block (the model's ``_no_split_modules``, or the
    plugin's ``transformer_cls_names_to_wrap``) is one unit, the rest of each transformer the root unit. A
    ``ModuleDict`` of Wan 2.2 experts is never called itself, so each expert is its own root. ``mesh``: a 2-D
    hybrid mesh (:func:`shard_mesh`), or None to shard over every process."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {
        "mesh": mesh,
        "reshard_after_forward": plugin.reshard_after_forward,
        "offload_policy": plugin.cpu_offload,
        "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy(),
    }
    roots = list(module.values()) if isinstance(module, nn.ModuleDict) else [module]
    for root in roots:
        blocks = set(plugin.transformer_cls_names_to_wrap or getattr(root, "_no_split_modules", None) or [])
        for sub in root.modules():
            if sub is not root and type(sub).__name__ in blocks:
                fully_shard(sub, **kwargs)
        fully_shard(root, **kwargs)


def full_state_dict(module: nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """The weights of a sharded ``module`` whole, on the main process's CPU ({} on the others): gathered one tensor at
    a time, so no process ever holds the whole model on its device. ``trainable_only``: just the parameters that
    train (a LoRA), by their ``named_parameters`` names. Call on every process."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)
    return get_model_state_dict(module, options=options)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of a sharded (DTensor) tensor; the tensor itself otherwise."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def reduce_gradients(params: Sequence[nn.Parameter], accelerator: Any, loss_finite: bool, sharded: bool = False) -> bool:
    """Average gradients over processes (one all-reduce) and say whether the step is finite on every process.

    The loss flag rides along as one extra element (0 or NaN), so every process reaches the same verdict. Parameters
    that received no gradient count as zero gradient. ``sharded``: FSDP has already averaged the gradients (each
    process holds its shard), so only the flag, now also NaN for a non-finite shard, is reduced.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([local(g).detach().reshape(-1).float() for g in grads])
    if sharded:
        finite_here = loss_finite and bool(torch.isfinite(flat).all())
        flag = torch.tensor([0.0 if finite_here else math.nan], device=flat.device)
        return bool(torch.isfinite(accelerator.reduce(flag, reduction="sum")).all())
    flag = torch.tensor([0.0 if loss_finite else math.nan], device=flat.device)
    flat = torch.cat([flat, flag])
    if accelerator is not None and accelerator.num_processes > 1:
        flat = accelerator.reduce(flat, reduction="mean")
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n
    return bool(torch.isfinite(flat).all())


def gather_rows(tensor: torch.Tensor, accelerator: Any) -> torch.Tensor:
    """``tensor`` [N,...] of every process concatenated in rank order (the tensor itself with one process); every
    process must pass the same shape. Statistics over the whole batch (GRPO's global and max-group std) need it."""
    if accelerator is None or accelerator.num_processes == 1:
        return tensor
    return accelerator.gather(tensor.to(accelerator.device)).to(tensor.device)


def gather_list(items: list[Any], accelerator: Any) -> list[Any]:
    """``items`` (picklable) of every process concatenated in rank order (the list itself with one process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


def clip_gradients(params: Sequence[nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm to ``max_norm`` (0 = no clipping) and return the norm before clipping."""
    limit = max_norm if max_norm > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], limit)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
