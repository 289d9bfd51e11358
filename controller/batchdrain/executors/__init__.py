"""Executors run one attempt of one phase: ``local`` (subprocesses) and ``kubernetes`` (Jobs)."""
