"""The rules a network must meet, and its two measures. Shared by build.py's quick check
(which runs next to the candidate, to give it reasons early) and score.py (which does
not import the candidate and decides the scores). Not a gene file: evolution never
edits it."""

from __future__ import annotations

import itertools

MAX_COMPARATORS = 1000  # far above any useful network for the n this template uses


class Rejected(ValueError):
    """The network breaks a rule; the message says which, in terms a fix can act on."""


def validate(network: object, n: int) -> list[tuple[int, int]]:
    """The network as a list of (i, j) pairs, or Rejected with the first rule it breaks."""
    if not isinstance(network, (list, tuple)):
        raise Rejected(f"comparators({n}) returned {type(network).__name__}, not a list of "
                       "(i, j) pairs")
    if len(network) > MAX_COMPARATORS:
        raise Rejected(f"comparators({n}) returned {len(network)} comparators; more than "
                       f"{MAX_COMPARATORS} is never needed")
    pairs = []
    for index, pair in enumerate(network):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(
                type(end) is int for end in pair):
            raise Rejected(f"comparator {index} is {pair!r}: each must be a pair of ints "
                           "(i, j)")
        i, j = pair
        if not (0 <= i < n and 0 <= j < n):
            raise Rejected(f"comparator {index} is {pair!r}: wires are numbered 0 to {n - 1}")
        if i >= j:
            raise Rejected(f"comparator {index} is {pair!r}: write the smaller wire first, "
                           f"and join two different wires (i < j)")
        pairs.append((i, j))
    unsorted = first_unsorted(pairs, n)
    if unsorted is not None:
        given, result = unsorted
        raise Rejected(f"the network does not sort: input {_bits(given)} comes out "
                       f"{_bits(result)} (every one of the {2 ** n} inputs of 0s and 1s "
                       "must come out sorted)")
    return pairs


def first_unsorted(pairs: list[tuple[int, int]], n: int
                   ) -> tuple[tuple[int, ...], list[int]] | None:
    """The first 0-1 input the network leaves unsorted, and what it made of it. By the
    0-1 principle, a network that sorts every 0-1 input sorts every input."""
    for given in itertools.product((0, 1), repeat=n):
        values = list(given)
        for i, j in pairs:
            if values[i] > values[j]:
                values[i], values[j] = values[j], values[i]
        if any(values[k] > values[k + 1] for k in range(n - 1)):
            return given, values
    return None


def depth(pairs: list[tuple[int, int]], n: int) -> int:
    """The number of parallel steps: a comparator runs one step after the later of the
    last comparators on its two wires."""
    ready = [0] * n
    for i, j in pairs:
        ready[i] = ready[j] = max(ready[i], ready[j]) + 1
    return max(ready, default=0)


def _bits(values) -> str:
    return "".join(str(v) for v in values)
