"""A real ``klambda up`` (subprocess) on a free port, with examples/ and test functions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from klambda.api import sigv4
from tests.helpers import free_port, wait_until

HERE = Path(__file__).resolve().parent


@dataclass
class Platform:
    process: subprocess.Popen[str]
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, str]:
        return json.loads((self.data_dir / "run" / "platform.json").read_text())

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "klambda.cli.main",
                *args,
                "--data-dir",
                str(self.data_dir),
            ],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def http(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
        sign: bool | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; Lambda API paths (/20xx-...) are SigV4-signed by the admin key."""
        headers = dict(headers or {})
        if sign or (sign is None and path.startswith("/20")):
            state = self.state()
            key = (state["access_key_id"], state["secret_access_key"])
            headers.update(self.signature(method, path, body or b"", headers, *key))
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def signature(
        self, method: str, path: str, body: bytes, headers: dict[str, str], key_id: str, secret: str
    ) -> dict[str, str]:
        raw_path, _, query = path.partition("?")
        return sigv4.sign(
            method,
            raw_path,
            query,
            {**headers, "host": f"127.0.0.1:{self.port}"},
            body,
            access_key_id=key_id,
            secret=secret,
            region="us-east-1",
        )

    def children(self) -> list[int]:
        """Every process descended from klambda up."""
        out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
        parent: dict[int, int] = {}
        for line in out.splitlines():
            pid, ppid = map(int, line.split())
            parent[pid] = ppid
        found, frontier = [], {self.process.pid}
        while frontier:
            kids = {p for p, pp in parent.items() if pp in frontier}
            found += sorted(kids)
            frontier = kids
        return found


PORT_ATTEMPTS = 3


def start_platform(tmp: Path, *files: str, extra: tuple[str, ...] = ()) -> Platform:
    """``klambda up`` on a free port. The port is free when picked but may be taken before
    klambda binds it (by another test's ephemeral socket): then another one is picked."""
    for attempt in range(PORT_ATTEMPTS):
        try:
            return _start_platform(tmp, files, extra)
        except PortTaken:
            if attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """The port picked was taken before ``klambda up`` could listen on it."""


def _start_platform(tmp: Path, files: tuple[str, ...], extra: tuple[str, ...]) -> Platform:
    port = free_port()
    data_dir = tmp / "data"
    args = [
        sys.executable,
        "-m",
        "klambda.cli.main",
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        *extra,
    ]
    for f in files:
        args += ["-f", f]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    platform = Platform(process, data_dir, port)
    state = data_dir / "run" / "platform.json"
    try:
        wait_until(lambda: _written_by(state, process.pid) or process.poll() is not None, 60)
    except AssertionError:
        stop_platform(platform)
        raise
    if process.poll() is not None:
        out = stop_platform(platform)
        if f"cannot listen on 127.0.0.1:{port}: Address already in use" in out:
            raise PortTaken(out)
        raise RuntimeError(f"klambda up exited: {out}")
    return platform


def _written_by(state: Path, pid: int) -> bool:
    """The platform file is this process's (not one a killed run left behind)."""
    try:
        return bool(json.loads(state.read_text())["pid"] == pid)
    except (OSError, ValueError, KeyError):
        return False


def stop_platform(platform: Platform) -> str:
    if platform.process.poll() is None:
        platform.process.send_signal(signal.SIGINT)
        try:
            platform.process.wait(30)
        except subprocess.TimeoutExpired:
            platform.process.kill()
            platform.process.wait()
    if platform.process.stdout is None or platform.process.stdout.closed:
        return ""  # stopped and read already
    with platform.process.stdout:
        return platform.process.stdout.read()


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[Platform]:
    p = start_platform(
        tmp_path_factory.mktemp("up"), str(repo_root / "examples"), str(HERE / "functions")
    )
    yield p
    stop_platform(p)


def wait_for_reason(platform: Platform, name: str, reason: str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    """The Function's status once its Ready condition has ``reason``."""
    deadline = time.monotonic() + timeout
    while True:
        status = json.loads(platform.cli("get", "fn", name, "-o", "json").stdout).get("status", {})
        if status.get("conditions", [{}])[0].get("reason") == reason:
            return dict(status)
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running: {[p for p in pids if pid_alive(p)]}")
        time.sleep(0.1)
