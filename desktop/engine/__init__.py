"""torch + diffusers. Imported lazily: only by the worker thread, the CLI, tests and benchmarks."""
