"""The long OpenAPI fuzzing run: schemathesis against a real ``serve`` process.

The test suite fuzzes the HTTP layer in-process over a scripted engine
(``tests/unit/server_ref/api/test_openapi_fuzz.py``); this runs the same checks, with many
more cases and schemathesis' stateful phase, against ``python -m server_ref serve`` on
127.0.0.1 with a real model, so the engine, the sampler and the tokenizer are fuzzed too.

    python scripts/fuzz_openapi.py                      # the tiny random-weight test model
    python scripts/fuzz_openapi.py --max-examples 500 --api-key sk-fuzz
    python scripts/fuzz_openapi.py --model smollm2-135m-instruct --serve-args='--max-model-len 512'

It prints schemathesis' report, then one summary: cases, failures, errors, the server's
answers by status class (from its access log) and whether it is still healthy. The exit
status is schemathesis' (0: no failures).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kit.openapi_checks import CONFIG  # noqa: E402  (tests/ is not a package on the path)
from kit.tinymodel import write_tiny_gguf  # noqa: E402

HOOKS = REPO / "tests" / "kit" / "openapi_checks.py"
# "<time> server_ref.access POST /v1/completions 200 12.5ms request_id=..." (middleware.py)
ACCESS_LINE = re.compile(r" server_ref\.access .* (\d{3}) [\d.]+ms request_id=\S*$", re.M)


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz-openapi-") as tmp:
        work = Path(tmp)
        model = str(write_tiny_gguf(work / "tiny.gguf")) if args.model == "tiny" else args.model
        port = free_port()
        log_path = work / "server.log"
        server = start_server(model, port, args, log_path)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, server)
            started = time.monotonic()
            code, report = run_schemathesis(base, args, work)
            elapsed = time.monotonic() - started
            healthy = httpx.get(f"{base}/health", timeout=10).status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
        log = log_path.read_text(errors="replace")
        statuses = collections.Counter(status_class(m.group(1)) for m in ACCESS_LINE.finditer(log))
    cases = report.get("test_cases", {})
    print(
        json.dumps(
            {
                "model": args.model,
                "api_key": bool(args.api_key),
                "max_examples": args.max_examples,
                "seed": args.seed,
                "cases": cases.get("generated"),
                "cases_with_failures": cases.get("with_failures"),
                "unique_failures": cases.get("unique_failures"),
                "errored": cases.get("errored"),
                "server_answers": dict(sorted(statuses.items())),
                "healthy_after": healthy,
                "seconds": round(elapsed, 1),
                "exit_code": code,
            }
        )
    )
    return code


def status_class(status: str) -> str:
    """ "2xx", "4xx", "5xx"; 499 (the client went away, e.g. its timeout) on its own."""
    return "499 client gone" if status == "499" else f"{status[0]}xx"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny', a known model name or a GGUF")
    parser.add_argument("--max-examples", type=int, default=500, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-time", type=int, default=None, help="seconds; fuzzing repeats until they are spent"
    )
    parser.add_argument("--api-key", default=None, help="serve with this key (tests the 401s)")
    # one: with two, schemathesis 4.32 on Python 3.11 once failed inside its own lazy imports
    # ("AST constructor recursion depth mismatch"), a fuzzer error rather than a finding
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--serve-args", default="", help="more flags for serve, one string")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    model: str, port: int, args: argparse.Namespace, log_path: Path
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "server_ref", "serve", "--model", model, "--port", str(port)]
    command += ["--device", "cpu", "--log-level", "info", *shlex.split(args.serve_args)]
    if args.api_key:
        command += ["--api-key", args.api_key]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the fuzzer shares the CPUs
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(base: str, server: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server was not healthy after {timeout:.0f} s")


def run_schemathesis(base: str, args: argparse.Namespace, work: Path) -> tuple[int, dict]:
    config = dict(CONFIG)
    if args.api_key:
        config["auth"] = {"openapi": {"bearer": {"bearer": args.api_key}}}
    config_path = work / "schemathesis.toml"
    config_path.write_text(to_toml(config))
    report_path = work / "report.json"
    command = ["schemathesis", "--config-file", str(config_path), "run", f"{base}/openapi.json"]
    command += ["--max-examples", str(args.max_examples), "--seed", str(args.seed)]
    command += ["--workers", str(args.workers), "--request-timeout", str(args.request_timeout)]
    command += ["--report", "json", "--report-json-path", str(report_path)]
    if args.max_time:
        command += ["--max-time", str(args.max_time)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    code = subprocess.run(command, cwd=work, env=env, check=False).returncode
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return code, report


def to_toml(tables: dict, prefix: str = "") -> str:
    """The nested settings as TOML tables (values are bools, numbers and strings only)."""
    lines: list[str] = []
    scalars = {k: v for k, v in tables.items() if not isinstance(v, dict)}
    if scalars and prefix:
        lines.append(f"[{prefix}]")
    for key, value in scalars.items():
        lines.append(f"{key} = {json.dumps(value)}")
    for key, value in tables.items():
        if isinstance(value, dict):
            lines.append(to_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
