"""Run plumbing: what a run needs around the library (the run folder's files and lock, checks, the gate for stored
configs, checkpoints on disk, results, DDP under Hydra, console, Hydra callbacks), kept apart from the model, data
and commands."""
