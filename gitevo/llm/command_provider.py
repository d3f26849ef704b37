"""Any program as an LLM: `bash -c COMMAND` reads the prompt on stdin and prints the answer.

The prompt is plain text with one `=== role ===` line before each part, so a script (or a
local model's CLI) can split it. GITEVO_TEMPERATURE and GITEVO_MAX_TOKENS carry the sampling
parameters drawn for the call; usage is estimated at 4 characters a token.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess

from gitevo.llm.sdk_errors import one_line
from gitevo.llm.settings import LLMSettings
from gitevo.llm.types import LLMError, Reply, Request, Usage

STDERR_TAIL = 300


def render(request: Request) -> str:
    """The whole conversation as text: system, then each turn, the stable prefix leading
    the first user turn."""
    parts = []
    if request.system:
        parts.append(f"=== system ===\n{request.system}")
    parts += [f"=== {m.role} ===\n{m.content}" for m in request.merged()]
    return "\n\n".join(parts) + "\n"


class CommandProvider:
    name = "command"

    def __init__(self, settings: LLMSettings):
        self.command = settings.command or ""
        self.model = settings.model or "command"
        self._timeout = settings.timeout

    def send(self, request: Request) -> Reply:
        prompt = render(request)
        temperature = "" if request.temperature is None else f"{request.temperature:g}"
        env = {**os.environ, "GITEVO_TEMPERATURE": temperature,
               "GITEVO_MAX_TOKENS": str(request.max_tokens), "GITEVO_MODEL": self.model}
        # a session of its own, so a timeout can kill the command and all it started
        proc = subprocess.Popen(["bash", "-c", self.command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
        try:
            out, err = proc.communicate(prompt.encode("utf-8"), timeout=self._timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            raise LLMError("timeout", f"command: {self._shown()} gave no answer within "
                                      f"{self._timeout:g} s") from None
        stderr = err.decode("utf-8", "replace")
        if proc.returncode != 0:
            tail = one_line(stderr[-STDERR_TAIL:]) or "no output on stderr"
            raise LLMError("server", f"command: {self._shown()} exited with status "
                                     f"{proc.returncode}: {tail}")
        text = out.decode("utf-8", "replace")
        usage = Usage(math.ceil(len(prompt) / 4), math.ceil(len(text) / 4))
        return Reply(text=text, model=self.model, stop_reason="end", usage=usage,
                     raw={"stdout": text, "stderr": stderr[-STDERR_TAIL:], "returncode": 0})

    def _shown(self) -> str:
        return f"`{one_line(self.command)[:80]}`"

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)  # reap it; bounded in case a pipe stays open

    def close(self) -> None:
        pass
