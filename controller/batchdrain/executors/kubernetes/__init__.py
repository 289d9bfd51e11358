"""The ``kubernetes`` executor as small parts; ``KubernetesExecutor`` is its face.

Dependencies run one way: ``executor`` (the facade) -> ``adoption``, ``supervise``,
``cleanup`` -> ``watches``, ``logs``, ``outcome``, ``attempt`` (the pure state
machine) -> ``classify``, ``jobspec``, the ``kube`` seam (passed in) and ``logstore``.
"""

from batchdrain.executors.kubernetes.executor import KubernetesExecutor

__all__ = ["KubernetesExecutor"]
