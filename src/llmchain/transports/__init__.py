"""Transports: the innermost step that talks to a provider (or pretends to)."""
