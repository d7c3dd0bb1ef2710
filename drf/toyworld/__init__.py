"""The toy world: procedural 3D scenes with exact depth and poses, their prompts, and a pixel-only oracle.

It is the embedded default and the lab of the project: generators and critics are trained on its renders, and the
oracle scores generated videos on the same questions without ever being optimised against.
"""
