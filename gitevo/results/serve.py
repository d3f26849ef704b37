"""`gitevo report --serve`: the HTML report, live, from a read-only server on loopback.

Every request reads the repository afresh, so the page follows a run that another
process is making, survives that process being killed and resumed, and shows a remote
run in a clone that `gitevo sync` keeps up to date. The page is built again only when the
run's refs (individuals, ledger, notes, hints) or its saved plan changed; the page polls
/version every two seconds and reloads itself when it moves. Only GET is answered: no
route changes anything.
"""

from __future__ import annotations

import hashlib
import html
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gitevo.config import Config
from gitevo.pipeline.plan import Plan, plan_path
from gitevo.results import html_report
from gitevo.results.plots import ReportError
from gitevo.store import individuals
from gitevo.store.gitstore import BRANCH_PREFIX, NOTES_PREFIX, Store, notes_ref

POLL_MS = 2000
LIVE_SCRIPT = f"""<script>
(function () {{
  let seen = null;
  async function look() {{
    try {{
      const now = await (await fetch("/version", {{cache: "no-store"}})).text();
      if (seen !== null && now !== seen) {{ location.reload(); return; }}
      seen = now;
    }} catch (e) {{ /* the server is restarting: look again later */ }}
    setTimeout(look, {POLL_MS});
  }}
  look();
}})();
</script>"""
TYPES = {"index.html": "text/html; charset=utf-8", html_report.FRONT_PNG: "image/png",
         html_report.PROGRESS_PNG: "image/png"}


class Live:
    """The run's page and images, built again when the run moved."""

    def __init__(self, root: Path, config: Config, run: str):
        self.root, self.config, self.run = root, config, run
        self._lock = threading.Lock()
        self._built: str | None = None
        self._files: dict[str, bytes] = {}

    def version(self) -> str:
        """A digest of everything the page shows: refs, notes, hints and the saved plan."""
        store = Store(self.root)
        refs = {**store.refs_under(f"{BRANCH_PREFIX}{self.run}/"),
                **{r: c for r, c in store.refs_under(NOTES_PREFIX).items()
                   if _of_run(r[len(NOTES_PREFIX):], self.run)}}
        digest = hashlib.sha256(repr(sorted(refs.items())).encode())
        plan = plan_path(store, self.run)
        if plan.exists():
            digest.update(plan.read_bytes())
        return digest.hexdigest()[:16]

    def file(self, name: str) -> bytes | None:
        with self._lock:
            version = self.version()
            if version != self._built:
                self._files = self._build()
                self._built = version
            return self._files.get(name)

    def _build(self) -> dict[str, bytes]:
        store = Store(self.root)
        with tempfile.TemporaryDirectory(prefix="gitevo-serve-") as tmp:
            try:
                html_report.write(store, self.config, self.run, Path(tmp))
            except ReportError as exc:
                return {"index.html": _waiting(str(exc)).encode()}
            files = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
        text = files["index.html"].decode("utf-8")
        progress = in_progress(store, self.run)
        if progress:
            text = text.replace("<nav>", progress + "<nav>", 1)
        files["index.html"] = text.replace("</body>", LIVE_SCRIPT + "</body>", 1).encode()
        return files


def in_progress(store: Store, run: str) -> str:
    """The generation being made, from its saved plan: which children are done (noted),
    running (committed, not yet noted) and queued; "" when none is."""
    plan = Plan.load(plan_path(store, run))
    if plan is None:
        return ""
    commits = individuals.commits(store, run)
    notes = store.read_notes(notes_ref(run))
    done, running, queued, refused = [], [], [], []
    for spec in plan.specs:
        commit = commits.get(spec.id)
        if spec.rejected:
            refused.append(spec.id)
        elif commit is None:
            queued.append(spec.id)
        else:
            (done if commit in notes else running).append(spec.id)
    parts = [f"{label} {len(ids)} ({', '.join(ids) if ids else '-'})"
             for label, ids in (("done", done), ("running", running), ("queued", queued),
                                ("refused", refused))]
    return (f'<p id="in-progress"><b>generation {plan.generation} in progress:</b> '
            + html.escape("; ".join(parts)) + "</p>")


def _of_run(name: str, run: str) -> bool:
    """Whether a notes ref's name (main, main-llm, main-rung1, ...) belongs to `run`."""
    return name == run or name.startswith(f"{run}-")


def _waiting(reason: str) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>gitevo</title></head>"
            f"<body><p>{html.escape(reason)}</p>{LIVE_SCRIPT}</body></html>")


def serve(root: Path, config: Config, run: str, host: str, port: int,
          ready=print) -> None:
    """Serve until interrupted; `ready` gets the one line that says where."""
    live = Live(root, config, run)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if path == "/version":
                return self._send(200, live.version().encode(), "text/plain")
            name = "index.html" if path == "/" else path.lstrip("/")
            body = live.file(name) if name in TYPES else None
            if body is None:
                return self._send(404, b"not found\n", "text/plain")
            return self._send(200, body, TYPES[name])

        def _refuse(self) -> None:
            self._send(405, b"read-only: GET only\n", "text/plain")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if status == 405:
                self.send_header("Allow", "GET")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # a request per two seconds per reader: not worth a line each

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    ready(f"serving run {run!r} at http://{host}:{server.server_address[1]}/ "
          "(read-only; Ctrl-C stops)")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
