"""Run plumbing: what a run needs around the library (checks, checkpoints on disk, results, DDP
under Hydra, console, Hydra callbacks), kept apart from the model, data and commands."""
