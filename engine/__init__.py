"""Training machinery: configuration checks, tasks, loggers, checkpoints, entry points."""
