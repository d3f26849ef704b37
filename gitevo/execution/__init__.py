"""Running code that gitevo does not trust: one confined command (sandbox: the
environment allowlist, limits, bubblewrap or unshare, the process group), the pids
cgroups that bound it (cgroups), the fork server that starts those commands cheaply
(launcher, forkserver), which protections hold on this machine (doctor),
one evaluation as plain data and one of its commands run (job), an individual's checks
and fitness command made into an Evaluation (evaluate), a trusted scorer apart from the
untrusted trainer (scoring) and what may cross between them (handover), a fitness
command's learning curve and the rule that stops it early (progress), and where
evaluations run: locally, on Ray or on SLURM (executors/). It may import core,
config and store (the executors read the trees they ship from git).
"""
