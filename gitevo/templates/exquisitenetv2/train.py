"""Fitness of this repository: train model.py and write the metrics gitevo selects on.

    python train.py --fidelity demo --data PATH --metrics metrics.json
    python train.py --check --metrics check.json        # seconds: builds and steps once

This file and harness/ are protected: gitevo evolves model.py only. See README.md.
"""

import sys
from pathlib import Path

# The harness, with every reference it measures through, is imported before model.py.
from harness import cli

if __name__ == "__main__":
    cli.main(sys.argv[1:], Path(__file__).resolve().parent)
