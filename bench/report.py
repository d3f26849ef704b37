"""What a user feels of the HTML report on a large run: a toy run of about 1,000
individuals (offline operators), then the seconds `gitevo report --html` takes, the page's
size on disk, and how long headless Chromium takes until the family tree is drawn (the
page's own performance.now() when its script is done, and the browser's whole run).

    python bench/report.py                      # 1,000 individuals: 10 generations of 100
    python bench/report.py --generations 4 --n 50
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def gitevo(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gitevo", *args], capture_output=True,
                          text=True, check=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitevo-bench-report-") as tmp:
        repo, site = Path(tmp, "toy"), Path(tmp, "site")
        gitevo("init", str(repo), "--template", "toy")
        # the toy's config evaluates two at a time; the run is the setup, not the figure
        start = time.perf_counter()
        gitevo("-C", str(repo), "run", "--generations", str(args.generations), "--n",
               str(args.n), "-q")
        print(f"run: {args.generations} generations of {args.n} in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        start = time.perf_counter()
        gitevo("-C", str(repo), "report", "--html", str(site))
        seconds = time.perf_counter() - start
        page = site / "index.html"
        nodes = page.read_text().count('<circle class="node')
        size = sum(f.stat().st_size for f in site.iterdir())
        print(f"report: {nodes} nodes; written in {seconds:.2f} s; index.html "
              f"{page.stat().st_size / 1e6:.2f} MB, with its plots {size / 1e6:.2f} MB",
              flush=True)
        browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
        if browser is None:
            print("browser: not measured: no Chromium or Chrome here")
            return
        start = time.perf_counter()
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                              f"--user-data-dir={tmp}/profile", "--dump-dom",
                              page.resolve().as_uri()], capture_output=True, text=True,
                             timeout=300, env={**os.environ}).stdout
        total = time.perf_counter() - start
        drawn = re.search(r'data-tree-ms="(\d+)"', dom)
        print(f"browser: tree drawn {drawn.group(1) if drawn else '?'} ms after the page "
              f"began loading; headless Chromium's whole run {total:.2f} s", flush=True)


if __name__ == "__main__":
    main()
