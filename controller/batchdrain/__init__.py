"""batchdrain: drain a backlog of phases, one Kubernetes Job (or local process) per attempt."""

__version__ = "0.1.0"
