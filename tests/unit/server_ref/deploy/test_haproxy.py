"""``deploy.haproxy``: the HAProxy ingress's environment and its launcher, without Ray or a
running HAProxy (the integration test serves through a real one: ``test_ray_serve``)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from server_ref.cli import main as cli_main
from server_ref.deploy import haproxy
from server_ref.deploy.haproxy import haproxy_env, loopback_config, write_launcher

# the binds of Serve's HAProxy template (haproxy_templates.py), and one of ours
CONFIG = """frontend prometheus
    bind :9101
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
  bind *:8404
listen other
    bind 0.0.0.0:7000
    bind [::]:7001
"""


def test_binds_on_every_interface_move_to_the_host_and_others_stay() -> None:
    rewritten = loopback_config(CONFIG, "127.0.0.1")
    binds = [line.strip() for line in rewritten.splitlines() if "bind" in line]
    assert binds == [
        "bind 127.0.0.1:9101",
        "bind 127.0.0.1:8000",
        "bind 127.0.0.1:8404",
        "bind 127.0.0.1:7000",
        "bind 127.0.0.1:7001",
    ]
    assert "bind [::1]:8404" in loopback_config(CONFIG, "::1")


def test_the_launcher_runs_the_real_binary_on_a_rewritten_copy(tmp_path: Path) -> None:
    """The launcher as Serve runs it, with a stand-in binary that prints what it got."""
    real = tmp_path / "real-haproxy"
    real.write_text('#!/bin/sh\necho "$@"\ncat "$3"\n')
    real.chmod(0o755)
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG)
    launcher = write_launcher(tmp_path, str(real), "127.0.0.1")
    assert launcher.stat().st_mode & stat.S_IXUSR
    proc = subprocess.run(
        [str(launcher), "-db", "-f", str(config), "-sf", "123"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # Serve starts it from elsewhere: the launcher finds this server_ref itself
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stderr
    args, _, printed = proc.stdout.partition("\n")
    copy = tmp_path / "haproxy.127.0.0.1.cfg"
    assert args == f"-db -f {copy} -sf 123"
    assert printed == loopback_config(CONFIG, "127.0.0.1")
    assert config.read_text() == CONFIG  # Serve's own file is left as Serve wrote it


def test_each_instance_gets_its_own_ports_and_a_short_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(haproxy, "find_haproxy", lambda: sys.executable)
    env = haproxy_env("127.0.0.1", tmp_path)
    ports = [
        int(env[f"RAY_SERVE_{name}"])
        for name in (
            "HAPROXY_STATS_PORT",
            "HAPROXY_METRICS_PORT",
            "FALLBACK_PROXY_HTTP_PORT",
            "FALLBACK_PROXY_GRPC_PORT",
        )
    ]
    assert len(set(ports)) == 4 and all(p > 0 for p in ports)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY"] == "1"  # the prefix router's
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "2"
    assert Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"]).parent == tmp_path


def test_on_every_interface_asked_for_serve_s_binds_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(haproxy, "find_haproxy", lambda: sys.executable)
    assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in haproxy_env("0.0.0.0", tmp_path)


def test_without_haproxy_it_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(haproxy, "find_haproxy", lambda: None)
    with pytest.raises(RuntimeError, match="--ingress haproxy needs HAProxy"):
        haproxy_env("127.0.0.1", tmp_path)
    pytest.importorskip("ray.serve", reason="the CLI checks Ray first")
    from server_ref.deploy import options

    monkeypatch.setattr(options, "find_haproxy", lambda: None)
    argv = ["serve", "--model", "missing.gguf", "--device", "cpu", "--ray", "--ingress", "haproxy"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ingress haproxy needs HAProxy") and err.count("\n") == 1
