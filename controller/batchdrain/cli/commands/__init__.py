"""One module per command group; ``batchdrain.cli`` joins them into one app.

The groups do not import each other (an import-linter contract): what they share
lives in ``flags``, ``wiring`` and ``render``.
"""
