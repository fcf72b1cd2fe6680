"""``python -m sdk``, run as a real process with scripted stdin against a live tiny-model server.

The tiny model's words are noise, so these tests check what the server saw (token usage,
``/tokenize`` counts, abort metrics) rather than what the replies say.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from kit.live_clients import FINISHED, parse_series
from kit.live_server import REPO_ROOT, free_port
from kit.tinybert import NAME as TINY_EMBEDDING

USAGE = re.compile(r"^\[usage\] prompt_tokens=(\d+) completion_tokens=(\d+)$", re.MULTILINE)
RUN_TIMEOUT_S = 120.0


def sdk_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdk", *args]


def cli_env(base_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_SDK_")}
    if base_url is not None:
        env["LLM_SDK_BASE_URL"] = f"{base_url}/v1"
    return {**env, "PYTHONUNBUFFERED": "1"}


def run_cli(base_url: str | None, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``python -m sdk ARGS`` with ``LLM_SDK_BASE_URL`` set to the server (if any)."""
    return subprocess.run(
        sdk_command(*args),
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(base_url),
        cwd=REPO_ROOT,
        timeout=RUN_TIMEOUT_S,
    )


def usages(stderr: str) -> list[tuple[int, int]]:
    return [(int(p), int(c)) for p, c in USAGE.findall(stderr)]


def aborted(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
    return sum(
        value
        for name, labels, value in parse_series(text)
        if name == FINISHED and labels.get("finished_reason") == "abort"
    )


def test_models_prints_the_served_ids(base_url: str, model_id: str) -> None:
    result = run_cli(base_url, "models")

    expected = f"{model_id}\n{TINY_EMBEDDING}\n"
    assert (result.returncode, result.stdout, result.stderr) == (0, expected, "")


def test_chat_keeps_history_and_reset_forgets_it(base_url: str) -> None:
    # Turns 1 and 3 send the same text; /reset between them, so turn 3 must cost exactly what
    # turn 1 did, while turn 2 carries turn 1's question and answer on top of its own.
    script = "Hello there, model.\nAnd hello again.\n/reset\nHello there, model.\n"

    result = run_cli(
        base_url, "chat", "--temperature", "0", "--max-tokens", "5", "--usage", stdin=script
    )

    assert result.returncode == 0, result.stderr
    (p1, c1), (p2, _), (p3, _) = usages(result.stderr)
    assert p2 > p1 + c1
    assert p3 == p1
    # Scripted input: no prompt marker or banner anywhere, only the usage lines on stderr.
    assert USAGE.sub("", result.stderr).strip() == ""
    assert not result.stdout.startswith(">")


def test_chat_system_message_reaches_the_server(base_url: str) -> None:
    plain = run_cli(base_url, "chat", "--max-tokens", "1", "--usage", stdin="Hi\n")
    system = run_cli(
        base_url, "chat", "--system", "Be brief.", "--max-tokens", "1", "--usage", stdin="Hi\n"
    )

    assert plain.returncode == system.returncode == 0, plain.stderr + system.stderr
    [(p_plain, _)] = usages(plain.stderr)
    [(p_system, _)] = usages(system.stderr)
    assert p_system > p_plain


def test_chat_ctrl_c_stops_the_reply_and_returns_to_the_prompt(base_url: str) -> None:
    aborts_before = aborted(base_url)
    proc = subprocess.Popen(
        sdk_command("chat", "--temperature", "0", "--max-tokens", "100", "--usage"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(base_url),
        cwd=REPO_ROOT,
        # A shell starts background jobs with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler; give the CLI the disposition a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"Tell me a very long story.\n")
        proc.stdin.flush()
        assert proc.stdout.read(1), "no reply started"  # the reply is streaming now
        proc.send_signal(signal.SIGINT)
        proc.stdin.write(b"Short one.\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=RUN_TIMEOUT_S)  # closes stdin: EOF ends the chat
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert "(reply stopped)" in stderr
    assert len(usages(stderr)) == 1  # only the second turn finished
    # The first stream was closed mid-reply, so the server aborted that generation.
    deadline = time.monotonic() + 15.0
    while aborted(base_url) < aborts_before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert aborted(base_url) == aborts_before + 1


def test_complete_streams_a_raw_completion(base_url: str) -> None:
    # greedy: the tiny model's noise may sample its end-of-text token, and then stops early
    args = ("Once upon a time", "--max-tokens", "4", "--temperature", "0", "--usage")
    result = run_cli(base_url, "complete", *args)

    assert result.returncode == 0, result.stderr
    [(_, completion_tokens)] = usages(result.stderr)
    assert completion_tokens == 4
    assert result.stdout.endswith("\n")


def test_count_of_a_file_equals_the_server_count(base_url: str, tmp_path: Path) -> None:
    text = "Tokens, counted twice:\nonce here — once there. Ünïcödé too!\n" * 3
    path = tmp_path / "notes.txt"
    path.write_text(text, encoding="utf-8")
    server = httpx.post(f"{base_url}/tokenize", json={"prompt": text}, timeout=30.0).json()

    from_file = run_cli(base_url, "count", str(path))
    from_stdin = run_cli(base_url, "count", stdin=text)

    for result in (from_file, from_stdin):
        assert result.returncode == 0, result.stderr
        count, label = result.stdout.split(" ", 1)
        assert int(count) == server["count"]
        assert "exact" in label


def test_global_options_work_before_and_after_the_command(base_url: str, model_id: str) -> None:
    url = f"{base_url}/v1"
    before = run_cli(None, "--base-url", url, "models")
    after = run_cli(None, "models", "--base-url", url)

    assert before.stdout == after.stdout == f"{model_id}\n{TINY_EMBEDDING}\n"


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("models",), ""),
        (("chat",), "Hello?\n"),
        (("complete", "Hello"), ""),
        (("count",), "some text"),
    ],
    ids=["models", "chat", "complete", "count"],
)
def test_server_down_is_one_error_line(args: tuple[str, ...], stdin: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    result = run_cli(url, "--max-retries", "0", *args, stdin=stdin)

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot reach http://127.0.0.1:")


def test_error_status_is_one_line(base_url: str) -> None:
    result = run_cli(base_url, "chat", "--model", "no-such-model", stdin="Hello?\n")

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "404" in line and "no-such-model" in line


@pytest.mark.parametrize(
    "args",
    [("chat", "--max-tokens", "0"), ("models", "--bogus"), ("frobnicate",), ("--timeout", "x")],
)
def test_bad_usage_is_one_line_and_status_2(args: tuple[str, ...]) -> None:
    result = run_cli(None, *args)

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
