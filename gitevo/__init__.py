"""gitevo: evolve the code in a git repository with LLM-guided mutation and crossover.

Importing gitevo stays cheap: heavy dependencies (numpy, pymoo, LLM SDKs, torch)
load inside the commands that need them.
"""

__version__ = "0.1.0"
