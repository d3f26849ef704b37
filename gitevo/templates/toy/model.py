"""The toy genome: a small numeric function that gitevo evolves to fit a target curve.

Each top-level function is a gene block. Constants, math functions and
operators change under mutation; the harness in fitness.py scores the result.
"""

import math


def wave(x):
    return math.sin(1.0 * x)


def trend(x):
    return 0.2 * x


def predict(x):
    return 0.8 * wave(x) + trend(x) + 0.1
