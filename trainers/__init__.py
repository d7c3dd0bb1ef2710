"""Training recipes (DRF, GRPO) built from the components in ``drf``, ``critics`` and ``prompts``."""
