"""Memory of one training step as torch allocates it, counted by a dispatch mode over fake tensors.

``StepTracker`` is a ``TorchDispatchMode`` that sees every tensor an operator returns, counts each new storage's
bytes while the storage lives (a weak reference tells when it dies, as in ``torch.distributed._tools.mem_tracker``)
and keeps the peak, overall and within each phase of the step (the phases the recipe's own timer names). Models built
from fake tensors (``torch._subclasses.FakeTensorMode``) run the real step code through it without allocating: shapes,
dtypes, saved activations and gradient checkpointing behave as they would on the device, only the data is absent.

Two departures from a plain op-by-op count, both because fake tensors carry no values:

- a Python-side read of a fake value (``bool(torch.isfinite(loss))``, ``float(metric)``) returns a placeholder (True,
  0.0, 0) instead of failing, and a fake mask selects every element; the step's data-dependent choices (a skipped
  non-finite step) take their usual branch, and only metrics see the placeholders;
- a module called again without gradient on inputs of the same shapes (the sampling chain's gradient-free steps) is
  not re-run: its first call's output shapes are returned and the peak it reached above its inputs is charged again.
  A gradient-free call keeps nothing but its output, so the memory is the same; it makes a 14B plan ~20x faster.

A kernel's own scratch (buffers it allocates and frees inside one operator) is invisible to the dispatcher; given a
``kernel_scratch`` model (``drf.plan.kernels`` for the CPU's convolutions) it is counted for the moment the op runs,
under its own kind.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.distributed._tools.common_utils import get_untyped_storages
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map_only
from torch.utils.weak import WeakIdKeyDictionary

ACTIVATIONS = "activations"  # anything the step allocates that is not one of the kinds below
GRADIENTS = "gradients"
OPTIMIZER = "optimizer state"
IDLE = "between phases"  # what runs outside every named phase (e.g. the optimiser update)
SCRATCH = "kernel scratch"  # buffers a kernel makes and frees inside one operator (``kernel_scratch``)


@dataclass
class PhasePeak:
    """The most memory seen while a phase ran, and what it was made of at that moment."""

    bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class StepTracker(TorchDispatchMode):
    """Counts live tensor storage by kind; ``with tracker.phase("decode"): ...`` attributes peaks to phases.

    Storages that exist before the step (weights, EMA copies) are registered with ``add_static`` under a name of the
    caller's choosing; storages created inside are ``activations`` unless a hook relabels them (parameter gradients,
    optimiser state).
    """

    def __init__(self, kernel_scratch: Callable[[Any, tuple, Any], int] | None = None) -> None:
        """``kernel_scratch(func, args, out)``: bytes the kernel of ``func`` holds inside itself beyond what it returns
        (``drf.plan.kernels.cpu_conv_scratch`` for the CPU's convolutions); counted for the moment the op runs."""
        super().__init__()
        self._scratch = kernel_scratch
        self._live = WeakIdKeyDictionary()  # storage -> [bytes, kind]
        self.by_kind: dict[str, int] = {}
        self.total = 0
        self.peak = PhasePeak()
        self.phases: dict[str, PhasePeak] = {}
        self._phase = IDLE
        self._calls: dict[tuple, tuple[Any, int]] = {}  # gradient-free module call -> (output spec, peak above start)
        self._hooks: list[Any] = []

    # ----------------------------------------------------------------------------------------------- counting
    def _count(self, storage: torch.UntypedStorage, kind: str, scale: float = 1.0) -> None:
        entry = self._live.get(storage)
        if entry is not None:
            if entry[1] != kind and entry[1] == ACTIVATIONS:  # a gradient or optimiser state seen first as an output
                self._move(entry, kind)
            return
        nbytes = int(storage.nbytes() * scale)
        entry = [nbytes, kind]
        self._live[storage] = entry
        weakref.finalize(storage, self._release, entry)
        self._add(kind, nbytes)

    def _move(self, entry: list, kind: str) -> None:
        self._add(entry[1], -entry[0])
        entry[1] = kind
        self._add(kind, entry[0])

    def _release(self, entry: list) -> None:
        self._add(entry[1], -entry[0])

    def _add(self, kind: str, nbytes: int) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + nbytes
        self.total += nbytes
        if nbytes > 0:
            self._note_peak(self.total)

    def _transient(self, kind: str, nbytes: int) -> None:
        """``nbytes`` of ``kind`` allocated and freed again: they count toward the peak only."""
        self._add(kind, nbytes)
        self._add(kind, -nbytes)

    def _note_peak(self, total: int) -> None:
        phase = self.phases.setdefault(self._phase, PhasePeak())
        if total > phase.bytes:
            phase.bytes, phase.by_kind = total, dict(self.by_kind)
        if total > self.peak.bytes:
            self.peak = PhasePeak(total, dict(self.by_kind))

    def track(self, tensors: Iterable[torch.Tensor], kind: str, scale: float = 1.0) -> None:
        """Count these tensors' storages as ``kind`` (relabelling ones first counted as activations); ``scale``: the
        fraction of their bytes they take on the device (a quantised weight stands in as a bf16 fake)."""
        for tensor in tensors:
            for storage in get_untyped_storages(tensor):
                self._count(storage, kind, scale)

    def add_static(self, module_or_tensors: nn.Module | Iterable[torch.Tensor], kind: str) -> int:
        """Count what exists before the step (a model's parameters and buffers, EMA copies) as ``kind``; returns the
        bytes this call added."""
        before = self.total
        if isinstance(module_or_tensors, nn.Module):
            tensors = [*module_or_tensors.parameters(), *module_or_tensors.buffers()]
        else:
            tensors = list(module_or_tensors)
        self.track(tensors, kind)
        return self.total - before

    # ----------------------------------------------------------------------------------------------- the step
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute what happens inside to ``name`` (nested phases: the innermost wins)."""
        outer, self._phase = self._phase, name
        self.phases.setdefault(name, PhasePeak(self.total, dict(self.by_kind)))
        try:
            yield
        finally:
            self._phase = outer

    def watch_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Label each trainable parameter's ``.grad`` as a gradient once autograd has accumulated it."""
        for param in params:
            self._hooks.append(param.register_post_accumulate_grad_hook(lambda p: self.track([p.grad], GRADIENTS)))

    def watch_optimizers(self) -> None:
        """Label every optimiser's state as optimiser state after each ``step``."""

        def after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            for state in optimizer.state.values():
                self.track([v for v in state.values() if isinstance(v, torch.Tensor)], OPTIMIZER)

        self._hooks.append(register_optimizer_step_post_hook(after_step))

    def replay_gradient_free_calls(self, modules: Iterable[nn.Module]) -> None:
        """Run each module once per input shape when gradients are off, then replay (see the module docstring)."""
        for module in modules:
            original = module.forward
            module.forward = self._replaying(module, original)
            self._hooks.append(_Restore(module, original))

    def _replaying(self, module: nn.Module, forward: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return forward(*args, **kwargs)
            key = (id(module), _shapes(args), _shapes(kwargs), torch.is_autocast_enabled("cpu"))
            known = self._calls.get(key)
            if known is not None:
                spec, extra = known
                self._note_peak(self.total + extra)
                out = tree_map_only(_Spec, _Spec.make, spec)
                self.track([t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)], ACTIVATIONS)
                return out
            start, outer = self.total, self.peak
            self.peak = PhasePeak()  # the call's own peak, measured above what it started with
            try:
                out = forward(*args, **kwargs)
            finally:
                extra, self.peak = max(self.peak.bytes - start, 0), _larger(outer, self.peak)
            self._calls[key] = (tree_map_only(torch.Tensor, _Spec.of, out), extra)
            return out

        return call

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default and isinstance(args[0], FakeTensor):
            return _placeholder(args[0].dtype)
        if func is torch.ops.aten.nonzero.default and isinstance(args[0], FakeTensor):
            func = _all_nonzero  # a fake mask selects everything, as a fake bool reads true
        elif func is torch.ops.aten.index.Tensor and any(_is_fake_mask(i) for i in args[1]):
            args = (args[0], [j for i in args[1] for j in (_all_nonzero(i).unbind(1) if _is_fake_mask(i) else [i])])
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                for storage in get_untyped_storages(tensor):
                    self._count(storage, ACTIVATIONS)
        if self._scratch is not None:
            self._transient(SCRATCH, self._scratch(func, args, out))
        return out


class _Restore:
    def __init__(self, module: nn.Module, forward: Any) -> None:
        self.module, self.forward = module, forward

    def remove(self) -> None:
        self.module.forward = self.forward


@dataclass(frozen=True)
class _Spec:
    """A tensor's shape, strides, dtype and device: enough to make a fake one like it."""

    shape: tuple
    stride: tuple
    dtype: torch.dtype
    device: torch.device
    fake_mode: Any

    @classmethod
    def of(cls, t: torch.Tensor) -> _Spec:
        return cls(tuple(t.shape), tuple(t.stride()), t.dtype, t.device, getattr(t, "fake_mode", None))

    def make(self) -> torch.Tensor:
        with self.fake_mode or contextlib.nullcontext():
            return torch.empty_strided(self.shape, self.stride, dtype=self.dtype, device=self.device)


def _shapes(tree: Any) -> tuple:
    leaves = tree_flatten(tree)[0]
    return tuple((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else type(x).__name__ for x in leaves)


def _larger(a: PhasePeak, b: PhasePeak) -> PhasePeak:
    return a if a.bytes >= b.bytes else b


def _is_fake_mask(t: Any) -> bool:
    return isinstance(t, FakeTensor) and t.dtype == torch.bool


def _all_nonzero(t: torch.Tensor) -> torch.Tensor:
    """``nonzero`` of a fake tensor whose every element is taken as non-zero: [numel, ndim] indices."""
    with t.fake_mode:
        return torch.empty((t.numel(), t.dim()), dtype=torch.long, device=t.device)


def _placeholder(dtype: torch.dtype) -> bool | int | float:
    if dtype == torch.bool:
        return True
    return 0.0 if dtype.is_floating_point else 0
