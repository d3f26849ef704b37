"""A sorting network for n wires, as a list of comparators.

A comparator (i, j) with i < j looks at wires i and j and leaves the smaller value on
wire i, the larger on wire j. Applied in order, the comparators must sort every input.
The network is built as sort each half, then merge the two sorted halves.
"""


def sort_wires(wires):
    """Comparators that sort the values on `wires` (a list of wire numbers, ascending):
    insertion sort, each wire sinking past the larger ones before it."""
    network = []
    for top in range(1, len(wires)):
        for k in range(top, 0, -1):
            network.append((wires[k - 1], wires[k]))
    return network


def merge(left, right):
    """Comparators that merge two sorted runs, on the wires `left` and then `right`, into
    one sorted run: each wire of `right` sinks into place through all before it."""
    wires = left + right
    network = []
    for top in range(len(left), len(wires)):
        for k in range(top, 0, -1):
            network.append((wires[k - 1], wires[k]))
    return network


def comparators(n):
    """The whole network on wires 0 .. n-1."""
    half = n // 2
    left, right = list(range(half)), list(range(half, n))
    return sort_wires(left) + sort_wires(right) + merge(left, right)
