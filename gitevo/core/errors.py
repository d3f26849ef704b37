"""Errors raised on more than one layer, defined below all of them.

ConfigError is raised by config (gitevo.toml) and by llm.settings (its [llm] table),
which config imports: it lives here so neither has to import the other for it.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A problem in gitevo.toml; the message is one line naming file and key."""
