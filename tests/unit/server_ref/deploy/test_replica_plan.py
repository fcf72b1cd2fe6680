"""The replica plan of ``serve --ray``: Serve settings from the engine's capacity, CPU shares,
and one-line errors for plans that cannot run. No Ray is imported here or by what is tested."""

from __future__ import annotations

from typing import Any

import pytest
from kit.blocked_imports import run_without

from server_ref.cli import main
from server_ref.deploy.replicas import plan_replicas


def test_capacity_and_threads_follow_the_engine_and_the_machine() -> None:
    plan = plan_replicas(2, max_num_seqs=8, max_queue=24, cores=4)
    options = plan.deployment_options()
    assert options["num_replicas"] == 2
    assert options["max_ongoing_requests"] == 8 + 24
    assert options["max_queued_requests"] == 24
    assert options["ray_actor_options"]["num_cpus"] == 2
    assert options["ray_actor_options"]["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "2"
    assert "autoscaling_config" not in options


def test_autoscaling_aims_at_one_full_batch_per_replica() -> None:
    options = plan_replicas(1, max_replicas=4, max_num_seqs=16, cores=8).deployment_options()
    assert "num_replicas" not in options
    scaling = options["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 4)
    assert scaling["target_ongoing_requests"] == 16
    assert options["ray_actor_options"]["num_cpus"] == 2  # cores // max_replicas


def test_the_prefix_router_is_a_serve_router_config_and_a_front() -> None:
    plan = plan_replicas(2, max_num_seqs=16, max_queue=48, cores=2, router="prefix")
    config = plan.deployment_options()["request_router_config"]
    assert config["request_router_class"] == "server_ref.deploy.ray_router:PrefixAffinityRouter"
    assert config["request_router_kwargs"] == {"max_imbalance": 2}  # 2 at least
    wide = plan_replicas(2, max_num_seqs=256, max_queue=48, cores=2, router="prefix")
    wide_config = wide.deployment_options()["request_router_config"]
    assert wide_config["request_router_kwargs"] == {"max_imbalance": 16}  # max_num_seqs // 16
    front = plan.front_options()
    assert front["num_replicas"] == 1 and front["ray_actor_options"]["num_cpus"] == 0
    assert front["max_ongoing_requests"] == 2 * (16 + 48)  # never the narrowest queue
    assert "request_router_config" not in plan_replicas(2, cores=2).deployment_options()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": 0}, "--replicas must be 1 or more"),
        ({"replicas": 1, "cpus_per_replica": 3}, "more than this machine's 2 CPUs"),
        ({"replicas": 3}, "3 replicas x 1 CPUs need 3 CPUs"),
        ({"replicas": 2, "max_replicas": 1}, "must be at least --replicas"),
        ({"replicas": 1, "router": "random"}, "--router must be one of default, prefix, not"),
    ],
)
def test_plans_that_cannot_run_are_one_line_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_replicas(cores=2, **kwargs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ray", "--replicas", "0"], "--replicas must be 1 or more"),
        (["--ray", "--cpus-per-replica", "100000"], "more than this machine's"),
        (["--replicas", "2"], "need --ray"),
        (
            ["--ray", "--router", "nearest"],
            "--router must be one of default, prefix, not 'nearest'",
        ),
        (["--router", "prefix"], "need --ray"),
        (["--ingress", "haproxy"], "need --ray"),
        (["--ray", "--ingress", "nginx"], "argument --ingress: invalid choice: 'nginx'"),
    ],
)
def test_cli_refuses_before_anything_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model", "missing.gguf", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_sdk_and_the_plain_server_never_import_ray() -> None:
    code = (
        "import sdk, server_ref.cli, server_ref.api.serve, server_ref.deploy.options\n"
        "import sys; assert 'ray' not in sys.modules; print('ok')"
    )
    proc = run_without(["ray"], code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_ray_flag_without_ray_installed_is_one_line() -> None:
    code = "from server_ref.cli import main; raise SystemExit(main(['serve', '--ray']))"
    proc = run_without(["ray"], code)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: --ray needs Ray Serve: pip install 'llm-sdk[ray]'"
