"""Run the peer suite (tests/peers) against llama.cpp's two OpenAI-compatible servers.

Starts llama.cpp's own ``llama-server`` (given its binary) and llama-cpp-python's server
(given a Python that has ``llama_cpp.server``) on 127.0.0.1 with the default GGUF, each with
an API key, runs ``pytest tests/peers`` against each one and prints what passed, failed and was
skipped (with the reasons). Build both with ``scripts/build_llamacpp.sh DIR``::

    python scripts/run_peer_suite.py --llama-server DIR/bin/llama-server \\
        --llamacpp-python DIR/venv/bin/python [--record] [-- PYTEST ARGS]

``LLM_SDK_LLAMA_SERVER`` / ``LLM_SDK_LLAMACPP_PYTHON`` may name them instead; a server not
given is left out. ``--record`` first writes what each server answers to the SDK
(``tests/kit/recorded.py``'s scenario) to ``tests/fixtures/llamacpp/<server>.json``, the
fixtures the unit tests replay.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from kit.live_server import free_port  # noqa: E402
from kit.recorded import API_KEY, FIXTURES, record_scenario  # noqa: E402

MODEL = "smollm2-135m-instruct"  # the name both servers serve the GGUF under
START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Peer:
    name: str
    command: list[str]
    counts: str  # how count_tokens counts a chat there without a model file


PORT = "{port}"  # in a command: the port it is started on


def peers(args: argparse.Namespace, gguf: Path) -> list[Peer]:
    common = ["--host", "127.0.0.1", "--port", PORT]
    found = []
    if args.llama_server:
        cmd = [args.llama_server, "-m", str(gguf), "-a", MODEL, "--api-key", API_KEY]
        # one slot: its window is the whole --ctx-size
        cmd += ["-c", str(args.ctx), "-np", "1", "-t", str(args.threads), *common]
        found.append(Peer("llama-server", cmd, "tokenize"))
    if args.llamacpp_python:
        cmd = [args.llamacpp_python, "-m", "llama_cpp.server", "--model", str(gguf)]
        cmd += ["--model_alias", MODEL, "--api_key", API_KEY, "--n_ctx", str(args.ctx)]
        cmd += ["--n_threads", str(args.threads), "--interrupt_requests", "False", *common]
        found.append(Peer("llama-cpp-python", cmd, "estimate"))
    return found


@contextmanager
def running(peer: Peer, log: Path) -> Iterator[str]:
    """The peer serving on a free port for the block; its base URL (with ``/v1``)."""
    port = free_port()
    command = [str(port) if part == PORT else part for part in peer.command]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{peer.name} did not start; its output:\n{tail}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(base: str) -> bool:
    try:
        headers = {"authorization": f"Bearer {API_KEY}"}
        return httpx.get(f"{base}/models", headers=headers, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def record(peer: Peer, version: str, base: str, gguf: Path) -> None:
    exchanges: list[dict[str, Any]] = []
    record_scenario(base, MODEL, exchanges)
    data = {"server": peer.name, "version": version, "model": MODEL, "gguf": gguf.name}
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{peer.name}.json"
    text = json.dumps({**data, "exchanges": exchanges}, indent=1, ensure_ascii=False)
    path.write_text(text.replace(str(gguf), gguf.name))  # no path of this machine
    print(f"recorded {len(exchanges)} exchanges with {peer.name} {version} -> {path}")


def _version(peer: Peer, base: str) -> str:
    if peer.name == "llama-server":
        headers = {"authorization": f"Bearer {API_KEY}"}
        props = httpx.get(base.removesuffix("/v1") + "/props", headers=headers).json()
        return f"build {props.get('build_info', '?')}"
    code = "import llama_cpp; print(llama_cpp.__version__)"
    python = peer.command[0]
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return done.stdout.strip()


def run_suite(peer: Peer, base: str, gguf: Path, args: argparse.Namespace) -> tuple[int, str]:
    env = {
        **os.environ,
        "LLM_SDK_PEER_NAME": peer.name,
        "LLM_SDK_PEER_BASE_URL": base,
        "LLM_SDK_PEER_API_KEY": API_KEY,
        "LLM_SDK_PEER_MODEL": MODEL,
        "LLM_SDK_PEER_GGUF": str(gguf),
        "LLM_SDK_PEER_CONTEXT": str(args.ctx),
        "LLM_SDK_PEER_COUNTS": peer.counts,
    }
    cmd = [sys.executable, "-m", "pytest", "tests/peers", "-q", "-rs", "-p", "no:cacheprovider"]
    done = subprocess.run([*cmd, *args.pytest], cwd=REPO, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-server", default=os.environ.get("LLM_SDK_LLAMA_SERVER"))
    ap.add_argument("--llamacpp-python", default=os.environ.get("LLM_SDK_LLAMACPP_PYTHON"))
    ap.add_argument("--gguf", type=Path, help="default: the default model, pulled")
    ap.add_argument("--ctx", type=int, default=2048, help="the servers' context window")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", action="store_true", help="write tests/fixtures/llamacpp/")
    ap.add_argument("pytest", nargs="*", help="more pytest arguments (after --)")
    args = ap.parse_args()
    if not (args.llama_server or args.llamacpp_python):
        ap.error("name --llama-server and/or --llamacpp-python (see scripts/build_llamacpp.sh)")
    from server_ref.loading.registry import pull

    gguf = args.gguf or pull(MODEL)
    logs = Path(tempfile.mkdtemp(prefix="peer-logs-"))
    failed = False
    for peer in peers(args, gguf):
        with running(peer, logs / f"{peer.name}.log") as base:
            version = _version(peer, base)
            if args.record:
                record(peer, version, base, gguf)
            started = time.monotonic()
            code, output = run_suite(peer, base, gguf, args)
        failed |= code != 0
        took = time.monotonic() - started
        print(f"\n=== {peer.name} {version}: pytest tests/peers, {took:.0f} s ===")
        print(output.strip())
    print(f"\nserver logs: {logs}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
