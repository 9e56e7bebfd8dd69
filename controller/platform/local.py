"""The local platform: one shim process per function version, on this machine.

A shim reports readiness (its gRPC port, or why its runtime cannot run) as one JSON line on a
pipe. Roll-outs start the new shim, switch traffic to it, wait ``drain_delay`` for requests
already routed to the old one to arrive, then SIGTERM the old shim, which finishes in-flight
invocations before it exits. Only processes started here are ever signalled, by their pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import grpc

from klambda.api.isolation import function_uid
from klambda.api.lifecycle import die_with_parent
from klambda.api.objects import FunctionKey
from klambda.api.reasons import Reason
from klambda.api.shim_auth import KEY_BYTES, call_metadata, caller_token
from klambda.api.shim_config import ShimConfig
from klambda.api.types import Code, FunctionSpec, SecretKeyRef
from klambda.controller.code import CodeBundle, CodeChanged, CodeFetchFailed, prepare_local
from klambda.controller.platform import Observation, StartFailed
from klambda.controller.reconcile import RunningShim, ShimKey
from klambda.protos import MESSAGE_OPTIONS, shim_pb2, shim_pb2_grpc

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
CLOSE_TIMEOUT = 2.0
"""Seconds a shim told to stop now (the platform is shutting down) gets before SIGKILL: its
invocations were drained by the gateway already, and shutdown has a bound to keep."""


@dataclass
class ShimProcess:
    key: ShimKey
    config: ShimConfig
    process: asyncio.subprocess.Process
    address: str = ""
    """gRPC (control: Status, Provision)."""
    data_address: str = ""
    """The data path gateways invoke it on (``klambda.protos.frames``)."""
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False
    provisioned: int = 0
    channel: grpc.aio.Channel | None = None

    def stub(self) -> shim_pb2_grpc.ShimStub:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.address, options=MESSAGE_OPTIONS)
        return shim_pb2_grpc.ShimStub(self.channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return call_metadata(self.config.caller_token)


@dataclass
class LocalPlatform:
    """Runs shims as child processes. ``on_change`` is called when a shim dies on its own."""

    state_dir: Path
    code_root: Path
    drain_delay: float = 1.0
    python: str = sys.executable
    on_change: Callable[[ShimKey], None] = lambda key: None
    shim_key: bytes = field(default_factory=lambda: secrets.token_bytes(KEY_BYTES))
    """The platform key shims' caller tokens derive from (the gateway holds the same)."""
    pushes_observations = False  # a shim's idleness is read by asking it (observe)
    secrets: Callable[[str], Mapping[str, Mapping[str, str]]] = lambda namespace: {}
    """A namespace's Secrets by name (their data as text): the local store holds them, as the
    API server does on Kubernetes, where the kubelet resolves secretKeyRefs instead."""
    separate_users: bool = False
    """Each function's runtimes run under a uid of their own (``api.isolation``: root only)."""
    _uids: dict[tuple[str, str], int] = field(default_factory=dict)
    _current: dict[ShimKey, ShimProcess] = field(default_factory=dict)
    _retiring: dict[asyncio.Task[None], ShimProcess] = field(default_factory=dict)

    def running(self, function: FunctionKey | None = None) -> dict[ShimKey, RunningShim]:
        return {
            key: RunningShim(
                *key, config_hash=shim.config.config_hash, provisioned=shim.provisioned
            )
            for key, shim in self._current.items()
            if function is None or key[:2] == function
        }

    def endpoints(self, key: ShimKey) -> tuple[str, ...]:
        shim = self._current.get(key)
        return (shim.data_address,) if shim else ()

    async def prepare_code(
        self,
        code: Code,
        config_maps: Mapping[str, Mapping[str, str]],
        pinned_sha256: str | None,
        version: str,
    ) -> CodeBundle[Path]:
        if code.image is not None:
            raise StartFailed(
                Reason.IMAGE_NOT_SUPPORTED,
                "container image functions run on Kubernetes only: klambda up runs functions "
                "as local processes (use code.inline, configMap or zip here)",
                permanent=True,
            )
        try:
            return await prepare_local(code, self.code_root, config_maps, pinned_sha256, version)
        except CodeChanged as e:
            raise StartFailed(Reason.CODE_FETCH_FAILED, str(e), permanent=True) from e
        except CodeFetchFailed as e:
            raise StartFailed(Reason.CODE_FETCH_FAILED, str(e)) from e

    async def start(self, config: ShimConfig, code: CodeBundle[Path], spec: FunctionSpec) -> None:
        key = (config.namespace, config.function_name, config.version)
        token = caller_token(self.shim_key, *key)
        config = replace(config, code_dir=str(code.ref), caller_token=token)
        if self.separate_users:  # a function keeps its uid for the run, whatever its versions
            if key[:2] not in self._uids:
                self._uids[key[:2]] = function_uid(len(self._uids))
            config = replace(config, runtime_uid=self._uids[key[:2]])
        values = resolve_secret_refs(spec.secret_refs, self.secrets(key[0]), key[0])
        shim = await self._spawn(key, config, values)
        old = self._current.get(key)
        self._current[key] = shim
        shim.watcher = asyncio.create_task(self._watch(shim), name=f"watch-shim-{shim.process.pid}")
        if old is not None:
            self._retire(old)

    async def stop(self, key: ShimKey) -> None:
        shim = self._current.pop(key, None)
        if shim is not None:
            self._retire(shim)

    async def provision(self, key: ShimKey, count: int) -> None:
        shim = self._current.get(key)
        if shim is None:
            return
        try:
            await shim.stub().Provision(
                shim_pb2.ProvisionRequest(count=count), timeout=5, metadata=shim.metadata
            )
        except grpc.aio.AioRpcError as e:
            log.warning("provisioning %s/%s:%s failed: %s", *key, e.details())
            return
        shim.provisioned = count

    async def scale(self, key: ShimKey) -> float | None:
        """Nothing to size: one shim runs a version here and grows its environments itself;
        whether it runs at all the controller decides by the same rule (``desired_shims``)."""
        return None

    async def observe(self, key: ShimKey) -> Observation | None:
        shim = self._current.get(key)
        if shim is None:
            return None
        try:
            r = await shim.stub().Status(
                shim_pb2.StatusRequest(), timeout=5, metadata=shim.metadata
            )
        except grpc.aio.AioRpcError:
            return None
        return Observation(
            r.environments, r.busy, r.provisioned_target, r.provisioned_ready, r.idle_seconds
        )

    async def close(self) -> None:
        """Stops every shim now (SIGINT; SIGKILL after CLOSE_TIMEOUT), retiring ones included:
        a retiring shim's drain may be as long as its function's timeout, and shutdown of
        the whole platform must not wait for that (the gateway has drained already)."""
        shims = list(self._current.values())
        self._current.clear()
        retiring = dict(self._retiring)
        for task in retiring:
            task.cancel()
        await asyncio.gather(*retiring, return_exceptions=True)
        shims += retiring.values()
        await asyncio.gather(*(self._terminate(s, grace=CLOSE_TIMEOUT, drain=False) for s in shims))

    # ------------------------------------------------------------------ processes

    async def _spawn(
        self, key: ShimKey, config: ShimConfig, secret_values: Mapping[str, str] | None = None
    ) -> ShimProcess:
        namespace, name, version = key
        run_dir = self.state_dir / "shims"
        stem = f"{namespace}-{name}-{version.replace('$', '')}-{config.config_hash}"
        config_path = run_dir / f"{stem}.json"
        out = await asyncio.to_thread(_prepare, run_dir, config, config_path, stem)
        read_fd, write_fd = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "klambda.shim",
                str(config_path),
                "--ready-fd",
                str(write_fd),
                stdin=asyncio.subprocess.DEVNULL,
                # Secret values reach the shim as a pod's would: in its environment, not a file
                env={**os.environ, **(secret_values or {})},
                stdout=out,
                stderr=out,
                pass_fds=(write_fd,),
                start_new_session=True,  # Ctrl-C reaches `klambda up`, which stops shims in order
                preexec_fn=die_with_parent(),  # and if `klambda up` is killed, they go too
            )
        finally:
            os.close(write_fd)
            out.close()
        shim = ShimProcess(key, config, process)
        try:
            report = await asyncio.wait_for(_read_line(read_fd), READY_TIMEOUT)
        except TimeoutError:
            await self._terminate(shim, grace=0)
            message = f"the shim did not start within {READY_TIMEOUT}s"
            raise StartFailed(Reason.SHIM_START_FAILED, message) from None
        finally:
            os.close(read_fd)
        if not report:
            await self._terminate(shim, grace=0)
            raise StartFailed(
                Reason.SHIM_START_FAILED,
                f"the shim exited during start-up (see {run_dir / stem}.log)",
            )
        try:
            message = json.loads(report)
            assert isinstance(message, dict)
            assert "error" in message or {"port", "data_port"} <= message.keys()
        except (ValueError, AssertionError):
            await self._terminate(shim, grace=0)
            raise StartFailed(Reason.SHIM_START_FAILED, f"the shim reported {report!r}") from None
        if "error" in message:
            await self._terminate(shim, grace=0)
            reason = Reason.of(str(message.get("reason", ""))) or Reason.SHIM_START_FAILED
            raise StartFailed(reason, message["error"])
        shim.address = f"{config.grpc_host}:{message['port']}"
        shim.data_address = f"{config.grpc_host}:{message['data_port']}"
        shim.provisioned = config.provisioned_concurrency
        log.info("shim %s/%s:%s ready at %s (pid %d)", *key, shim.data_address, process.pid)
        return shim

    async def _watch(self, shim: ShimProcess) -> None:
        code = await shim.process.wait()
        if not shim.stopping and self._current.get(shim.key) is shim:
            log.warning("shim %s/%s:%s exited unexpectedly (code %s)", *shim.key, code)
            del self._current[shim.key]
            self.on_change(shim.key)

    def _retire(self, shim: ShimProcess) -> None:
        task = asyncio.create_task(self._drain(shim), name=f"retire-shim-{shim.process.pid}")
        self._retiring[task] = shim
        task.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("retiring a shim failed", exc_info=task.exception())

    async def _drain(self, shim: ShimProcess) -> None:
        await asyncio.sleep(self.drain_delay)
        grace = float(shim.config.timeout) + shim.config.init_timeout + STOP_TIMEOUT
        await self._terminate(shim, grace=grace)

    async def _terminate(self, shim: ShimProcess, grace: float, drain: bool = True) -> None:
        """SIGTERM (drain in-flight work) or SIGINT (stop now); SIGKILL after ``grace`` s."""
        shim.stopping = True
        proc = shim.process
        if proc.returncode is None:
            how = signal.SIGKILL if grace <= 0 else signal.SIGTERM if drain else signal.SIGINT
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(how)
            try:
                await asyncio.wait_for(proc.wait(), grace or STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if shim.watcher is not None:
            await shim.watcher
        if shim.channel is not None:
            await shim.channel.close()


def resolve_secret_refs(
    refs: Mapping[str, SecretKeyRef], secrets: Mapping[str, Mapping[str, str]], namespace: str
) -> dict[str, str]:
    """The values of a function's secretRefs, from the Secrets applied to the local store."""
    values = {}
    for var, ref in sorted(refs.items()):
        data = secrets.get(ref.name)
        if data is None:
            raise StartFailed(
                Reason.SECRET_NOT_FOUND,
                f'Secret "{ref.name}" not found in namespace {namespace} ({var})',
            )
        if ref.key not in data:
            raise StartFailed(
                Reason.SECRET_NOT_FOUND, f'Secret "{ref.name}" has no key "{ref.key}" ({var})'
            )
        values[var] = data[ref.key]
    return values


def _prepare(run_dir: Path, config: ShimConfig, config_path: Path, stem: str) -> BinaryIO:
    """Writes the shim's settings; opens its output file (the child inherits it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    Path(config.log_dir).mkdir(parents=True, exist_ok=True)
    config_path.write_text(config.to_json())
    return open(run_dir / f"{stem}.log", "ab")


async def _read_line(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", buffering=0)
    )
    try:
        return await reader.readline()
    finally:
        transport.close()
