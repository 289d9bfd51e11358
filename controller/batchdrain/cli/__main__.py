"""``python -m batchdrain.cli``: the command line in a process of its own (tests, benchmarks)."""

import sys

from batchdrain.cli import main

sys.exit(main())
