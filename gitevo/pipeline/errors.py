"""The pipeline's own error, apart from the modules that raise it.

Both the generation (evolution) and the proposals' keeper (producer, which evolution
imports) raise EvolutionError; it lives here so the producer needs nothing of evolution.
"""

from __future__ import annotations


class EvolutionError(RuntimeError):
    """The run cannot go on until the user acts (for example, the seed failed)."""
