"""Property tests of structured output: damaged JSON, round trips, repair budgets."""
