"""Memory a CPU convolution allocates inside its kernel, where a dispatch mode cannot see it, from the op's shapes.

A ``TorchDispatchMode`` sees ``aten.convolution`` and ``aten.convolution_backward`` and the tensors they return, not
the buffers the kernel makes and frees inside. On the CPU, PyTorch picks the kernel by its own rule
(``ConvParams::use_mkldnn`` in ``aten/src/ATen/native/Convolution.cpp``, asked here through
``torch._C._select_conv_backend``), and the two kernels a float32 video VAE reaches allocate:

- **oneDNN** (``Mkldnn``): a contiguous NCDHW tensor is not oneDNN's compute layout, so the kernel reorders the input
  into a blocked copy and computes the output in a blocked buffer, which it reorders into the plain output
  (``Note [MKLDNN Convolution Memory Formats]`` in ``aten/src/ATen/native/mkldnn/Conv.cpp``). Forward: the input's
  copy and the blocked output live together, then the blocked output beside the plain one: ``max(input, output)``
  bytes above what the op returns. The input gradient is the same computation from ``grad_output`` to ``grad_input``:
  ``max(input, output)``; the weight gradient then reorders ``grad_output`` and the input into blocked copies while
  ``grad_input`` lives: ``input + output``.
- **im2col** (``Slow2d``, ``Slow3d``, chosen for small inputs, e.g. batch 1 with N*C*D*H <= 20480): the input unfolded
  into columns ``[N, C_in * prod(kernel), prod(output spatial)]`` (``slow_conv3d_forward_out_cpu`` in
  ``ConvolutionMM3d.cpp``, ``slow_conv2d`` likewise), a view of the input for a 1x1 kernel with stride 1 and no
  padding; the backward allocates a columns buffer of the same size for the input gradient whatever the kernel.

Measured on this CPU (``tests/drf/test_plan.py`` checks it against the resident set of one convolution) for float32;
oneDNN's bf16 backward can take up to twice as much, which is not modelled. These are CPU figures: on a GPU the
buffers are cuDNN's workspaces, chosen by cuDNN's algorithm search and not derivable from shapes alone, so
``drf plan`` (a GPU plan) does not add them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

aten = torch.ops.aten
_BACKEND = torch._C._ConvBackend
_IM2COL = (_BACKEND.Slow2d, _BACKEND.Slow3d)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _backend(x: torch.Tensor, w: torch.Tensor, stride: Any, padding: Any, dilation: Any, transposed: bool,
             output_padding: Any, groups: int) -> Any:  # fmt: skip
    return torch._C._select_conv_backend(
        x, w, None, stride, padding, dilation, transposed, output_padding, groups, None
    )


def _columns(x: torch.Tensor, w: torch.Tensor, out_spatial: tuple[int, ...]) -> int:
    """Bytes of the im2col buffer: [N, C_in * prod(kernel), prod(output spatial)]."""
    return x.shape[0] * x.shape[1] * math.prod(w.shape[2:]) * math.prod(out_spatial) * x.element_size()


def _unit_kernel(w: torch.Tensor, stride: Any, padding: Any) -> bool:
    return all(k == 1 for k in w.shape[2:]) and all(s == 1 for s in stride) and not any(padding)


def cpu_conv_scratch(func: Any, args: tuple, out: Any) -> int:
    """Bytes a CPU convolution kernel holds beyond its inputs and the outputs it returns, at its peak (0 for any other
    op, and for kernels not modelled: depthwise, transposed, NNPACK)."""
    if func is aten.convolution.default:
        x, w, _, stride, padding, dilation, transposed, output_padding, groups = args
        backend = _backend(x, w, stride, padding, dilation, transposed, output_padding, groups)
        if backend == _BACKEND.Mkldnn:
            return max(_nbytes(x), _nbytes(out))
        if backend in _IM2COL and not _unit_kernel(w, stride, padding):
            return _columns(x, w, tuple(out.shape[2:]))
        return 0
    if func is aten.convolution_backward.default:
        grad_out, x, w, _, stride, padding, dilation, transposed, output_padding, groups, mask = args
        backend = _backend(x, w, stride, padding, dilation, transposed, output_padding, groups)
        if backend == _BACKEND.Mkldnn:  # the input gradient alone is a convolution from grad_out to grad_input
            return _nbytes(x) + _nbytes(grad_out) if mask[1] else max(_nbytes(x), _nbytes(grad_out))
        if backend in _IM2COL and (mask[0] or not _unit_kernel(w, stride, padding)):
            return _columns(x, w, tuple(grad_out.shape[2:]))
        return 0
    return 0
