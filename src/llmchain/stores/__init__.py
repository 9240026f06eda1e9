"""State backends shared by stages: rate-limit state, cache stores (memory, SQLite, Redis)."""
