"""Setting up and sharing a gitevo repository: `gitevo init` from a template or an
existing repository (initialize), what the installed git hooks run (hooks), the
exchange of runs between clones (sync), and moving the champion for CI (promote).
It may import every layer below it, results included (sync and promote use verify's
note handling); only cli imports it.
"""
