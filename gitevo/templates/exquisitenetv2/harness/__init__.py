"""The fitness harness of the ExquisiteNetV2 template: protected code, never a gene.

`train.py` is the entry point. The modules split the work: `guard` (references taken
before the candidate's code runs), `fidelity` (the training recipes), `data`, `cache`,
`formats`, `synthetic`, `split` (getting pixels into memory once), `batches` and
`augment` (building batches from in-memory tensors), `schedule`, `engine` (the training
loop), `measure` (the numbers that decide selection), `device`, `metrics`, `verify` (the
CI comparison) and `cli` (the order in which all of it runs).
"""
