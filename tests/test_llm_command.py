"""The command provider with small real scripts: echo-back, failure, and a hung command."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gitevo.llm import LLMError, Message, Request, make_client
from gitevo.llm.command_provider import render

REQUEST = Request("You improve models.", [Message("user", "Mutate SE."),
                                          Message("assistant", "bad diff"),
                                          Message("user", "Hunk 1 did not apply.")],
                  0.25, 777, stable_prefix="RULES\nSEED")


def make(command: str, **overrides):
    table = {"provider": "command", "command": command, "retries": 0, "backoff": 0.01,
             "timeout": 5.0, **overrides}
    return make_client(table, "gitevo.toml")


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "responder.sh"
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return str(path)


def test_echo_back_gets_the_whole_conversation_and_sampling_env(tmp_path):
    command = script(tmp_path, 'printf "T=%s N=%s\\n" "$GITEVO_TEMPERATURE" '
                               '"$GITEVO_MAX_TOKENS"\ncat\n')
    with make(command) as client:
        reply = client.complete(REQUEST)
        spent = client.spent()
    assert reply.text == "T=0.25 N=777\n" + render(REQUEST)
    assert render(REQUEST) == ("=== system ===\nYou improve models.\n\n"
                               "=== user ===\nRULES\nSEED\n\nMutate SE.\n\n"
                               "=== assistant ===\nbad diff\n\n"
                               "=== user ===\nHunk 1 did not apply.\n")
    assert reply.stop_reason == "end" and reply.model == "command"
    assert reply.usage.input_tokens == -(-len(render(REQUEST)) // 4)
    assert reply.usage.output_tokens == -(-len(reply.text) // 4)
    assert reply.usage.cost == 0 and spent == reply.usage
    assert reply.raw["returncode"] == 0


def test_a_command_that_ignores_stdin():
    with make("echo '--- a/model.py'", model="scripted") as client:
        reply = client.complete(REQUEST)
    assert reply.text == "--- a/model.py\n" and reply.model == "scripted"


def test_failing_command_is_server_error_with_stderr_tail(tmp_path):
    calls = tmp_path / "calls"
    command = script(tmp_path, f'echo x >> {calls}\necho "model crashed:\nout of memory" >&2\n'
                               'exit 3\n')
    with make(command, retries=2) as client, pytest.raises(LLMError) as info:
        client.complete(REQUEST)
    err = info.value
    assert err.kind == "server" and err.attempts == 3
    assert calls.read_text().count("x") == 3
    assert "exited with status 3: model crashed: out of memory" in str(err)
    assert str(err).startswith("command: `") and "\n" not in str(err)


def test_hung_command_times_out_and_is_killed_with_its_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    command = script(tmp_path, f"sleep 30 &\necho $! > {pidfile}\nwait\n")
    start = time.monotonic()
    with make(command, timeout=0.5) as client, pytest.raises(LLMError) as info:
        client.complete(REQUEST)
    assert time.monotonic() - start < 5
    assert info.value.kind == "timeout" and "within 0.5 s" in str(info.value)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; only its parent (gone with the group) would reap it
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")
