"""Reaching a Ray cluster: a dead address is one line at once, not a silent minute of retries."""

import socket

import pytest

from effvit_nas import runtime
from effvit_nas.errors import UserError
from effvit_nas.runtime import check_reachable, cluster_endpoint
from tests.support import patch_everywhere


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "address, endpoint",
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("ray://head:10001", ("head", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("local", None),
        ("head", None),
    ],
)
def test_cluster_endpoint(address, endpoint):
    assert cluster_endpoint(address) == endpoint


def test_auto_reads_what_ray_start_recorded(tmp_path, monkeypatch):
    record = tmp_path / "ray_current_cluster"
    monkeypatch.setattr(runtime, "RAY_CURRENT_CLUSTER", str(record))
    assert cluster_endpoint("auto") is None  # no record: Ray itself says no cluster is running
    record.write_text("127.0.0.1:6380\n")
    assert cluster_endpoint("auto") == ("127.0.0.1", 6380)


def test_a_dead_address_fails_at_once_with_one_line(tmp_path, monkeypatch):
    port = _free_port()  # nothing listens there now
    with pytest.raises(UserError) as e:
        check_reachable(f"127.0.0.1:{port}")
    msg = str(e.value)
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in msg and "\n" not in msg and "--ray-address" in msg
    record = tmp_path / "ray_current_cluster"
    record.write_text(f"127.0.0.1:{port}")
    monkeypatch.setattr(runtime, "RAY_CURRENT_CLUSTER", str(record))
    with pytest.raises(UserError, match="recorded by `ray start`"):
        check_reachable("auto")


def test_a_listening_address_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")
    check_reachable("local")  # nothing to probe


def test_sigterm_raises_terminated_inside_the_block_only():
    import os
    import signal

    from effvit_nas.runtime import Terminated, keep_sigterm_handler, sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_interrupts():
        with keep_sigterm_handler():
            signal.signal(signal.SIGTERM, lambda *a: None)  # as ray.init installs its own
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("SIGTERM did not interrupt")
    assert signal.getsignal(signal.SIGTERM) is before and issubclass(Terminated, KeyboardInterrupt)


def test_the_command_line_reports_a_sigterm_with_exit_143(monkeypatch, capsys):
    import importlib

    from effvit_nas.runtime import Terminated

    app = importlib.import_module("effvit_nas.cli.app")  # the module (the package exports the group as `app`)

    def terminated(**kw):
        raise Terminated()

    monkeypatch.setattr(app.app, "main", terminated)
    with pytest.raises(SystemExit) as e:
        app.main(["studies"])
    assert e.value.code == 143 and capsys.readouterr().err.strip() == "terminated (SIGTERM)"


def test_a_refused_token_is_named_from_what_rays_client_logged():
    """Ray's exception only says it could not connect; the client's log lines say why."""
    log = "gcs_client.cc:210: Failed to get cluster ID from GCS server: Unauthenticated: RPC error: InvalidAuthToken: ...\n" * 5
    msg = runtime.join_error("10.0.0.1:6379", ConnectionError("Failed to connect to Ray cluster"), log)
    assert msg.startswith("cannot join Ray at 10.0.0.1:6379: the cluster refused this process's token;") and "\n" not in msg
    plain = runtime.join_error("10.0.0.1:6379", ConnectionError("Failed to connect to Ray cluster"), "")
    assert plain == "cannot start/join Ray (10.0.0.1:6379): Failed to connect to Ray cluster"  # control: no auth words


def test_captured_stderr_takes_what_native_code_writes_to_fd_2(capfd):
    import os

    with runtime.captured_stderr() as text:
        os.write(2, b"InvalidAuthToken from C++\n")
    assert text == ["InvalidAuthToken from C++\n"] and capfd.readouterr().err == ""


def test_sigterm_while_ray_starts_is_an_interrupt_not_a_silent_exit(monkeypatch):
    """ray.init installs its own SIGTERM handler (sys.exit(SIGTERM)) while it runs: a kill
    then must still take the Ctrl-C path (exit 143 with a line), not exit 15 in silence."""
    import signal
    import types

    from effvit_nas.measure.actor import connect

    def init(**_):
        raise SystemExit(signal.SIGTERM)

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init, exceptions=types.SimpleNamespace(AuthenticationError=OSError))
    patch_everywhere(monkeypatch, runtime, "import_ray", lambda: fake)
    with pytest.raises(runtime.Terminated):
        connect(None)
