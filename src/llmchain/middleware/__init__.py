"""Built-in middleware stages, one module per stage (each registers itself as a plugin)."""
