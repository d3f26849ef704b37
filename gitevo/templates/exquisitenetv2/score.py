"""The trusted scorer of this repository: score the model that train.py exported.

    python score.py --fidelity demo --data PATH --artifacts DIR --metrics metrics.json

gitevo runs it apart from the trainer, with the held-out data; it never imports model.py.
"""

import sys

from harness import scorer

if __name__ == "__main__":
    scorer.main(sys.argv[1:])
