"""Integration tests: real HTTP against the loopback fault server."""
