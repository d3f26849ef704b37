"""One generation, as resumable steps: the plan drawn from the run's seeded RNG
(plan), SPEA2 and NSGA-II selection and the hypervolume (selection), the trusted
prepare step on the seed (prepare), the proposals' own process and the keeping of
what it makes (proposer, producer), fitness notes written as results come
(notewriter), the wall time split (timesplit), and the whole generation with its
crash recovery (evolution). It may import every layer below it: core, llm, config,
store, execution and variation.
"""
