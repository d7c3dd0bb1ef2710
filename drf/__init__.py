"""drf: fine-tune text-to-video diffusion models with differentiable rewards from frozen VLM critics.

The ``drf`` package holds the shared core (configs, video-model adapters, sampling chains, frames, rewards, geometry,
checkpoints, logging, the run directory), which imports none of ``prompts``, ``critics`` or ``trainers``, and the
applications built on all of them (``drf.report``, ``drf.toyworld``, the CLI modules); ``tests/test_layers.py`` holds
every import to that order.
"""

from drf.errors import DRFError

__version__ = "0.1.0"
__all__ = ["DRFError", "__version__"]
