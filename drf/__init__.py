"""drf: fine-tune text-to-video diffusion models with differentiable rewards from frozen VLM critics.

The ``drf`` package is the shared core (configs, video-model adapters, sampling chains, frames, rewards,
checkpoints, reports). It imports none of ``prompts``, ``critics`` or ``trainers``.
"""

from drf.errors import DRFError

__version__ = "0.1.0"
__all__ = ["DRFError", "__version__"]
