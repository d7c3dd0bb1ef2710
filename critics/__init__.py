"""Frozen VLM critics that answer questions about decoded frames with gradient-carrying log-probabilities."""
