"""Inspection reports: per-question scores, critic explanations, gradient saliency and training curves in one HTML file.

Import the pieces from their modules (``drf.report.builder``, ``drf.report.saliency``); this package file stays empty
so ``drf --help`` does not pay for torch or jinja2.
"""
