"""All of gitevo's access to git: the repository, objects, ref transactions, notes and
the run's lock (gitstore), the git command line where libgit2 falls short (remote),
the ledger branch of finished generations (ledger), the fitness note's record
(fitness), and individuals read back from refs, trailers and notes (individuals).
It may import core and config; it knows nothing of how a fitness is measured or how
children are made.
"""
