"""``klambda up``: the whole platform in one process tree, on this machine.

Wires the embedded Redis, the object store and its admin API, the controller with the local
platform, and the gateway; loads the manifests; prints each function's URL; and on Ctrl-C stops
everything it started, children included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import redis.asyncio as aioredis
from aiohttp import web

from klambda.api import defaults
from klambda.api.iam import AccessKey
from klambda.api.isolation import blocked_for_others, runtime_files
from klambda.api.manifest import ManifestError, load_documents
from klambda.api.objects import ApiObject, parse_object
from klambda.api.schema import ValidationError
from klambda.api.shim_auth import KEY_BYTES
from klambda.api.tasks import cancel_and_wait
from klambda.cli.shutdown import Shutdown
from klambda.cli.state import NotRunning, PlatformState
from klambda.controller.admin import create_admin_app
from klambda.controller.controller import Controller
from klambda.controller.persistence import StateFile
from klambda.controller.platform.iam_local import FileDirectory
from klambda.controller.platform.local import LocalPlatform
from klambda.controller.platform.redis_server import EmbeddedRedis, RedisUnavailable, ping
from klambda.controller.settings import ControllerSettings
from klambda.controller.store import ObjectStore
from klambda.gateway.app import create_app
from klambda.gateway.routing import RoutingTable
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.source_stats import RedisSourceStats

log = logging.getLogger("klambda")


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    files: list[str]
    host: str = "127.0.0.1"
    port: int = defaults.GATEWAY_PORT
    redis_url: str | None = None
    region: str = defaults.REGION
    idle_timeout: float = defaults.KEEP_WARM
    concurrency_limit: int = defaults.CONCURRENCY_LIMIT
    durability: str = "everysec"
    """Embedded Redis's appendfsync: ``everysec``, or ``always`` (``--durability strict``)."""
    shutdown_grace: float = defaults.SHUTDOWN_GRACE
    """Seconds in-flight invocations get to finish after Ctrl-C (a second Ctrl-C skips it)."""
    async_retry_delay: float = defaults.ASYNC_RETRY_DELAY
    zygote: bool = True
    """Fork Python environments from a pre-initialised interpreter (``--no-zygote``: spawn)."""


class UpError(Exception):
    """``klambda up`` cannot start; the message says why and what to do."""


def load_objects(paths: list[str]) -> list[ApiObject]:
    """Parses every manifest under ``paths``; raises UpError listing every problem found."""
    objects, problems = [], []
    for path in paths:
        try:
            docs = load_documents(path)
        except ManifestError as e:
            problems.append(str(e))
            continue
        for doc in docs:
            try:
                objects.append(parse_object(doc.data))
            except ValidationError as e:
                problems.append(f"{doc.source}: {e}")
    if problems:
        raise UpError("invalid manifests:\n  " + "\n  ".join(problems))
    return objects


def _setup_logging(data_dir: Path) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(logs / "klambda.log")
    file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(file)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("klambda: %(levelname)s: %(message)s"))
    root.addHandler(console)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _listen(host: str, port: int) -> socket.socket:
    """A bound listening socket, so the port is known (and known free) before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise UpError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port") from e
    return sock


async def _serve(
    app: web.Application, sock: socket.socket, shutdown_timeout: float
) -> web.AppRunner:
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host


async def run(options: UpOptions, out: TextIO = sys.stdout) -> int:
    """Runs the platform until SIGINT/SIGTERM; returns the exit code."""
    data_dir = options.data_dir.expanduser().resolve()
    try:
        running = PlatformState.find(data_dir)
    except NotRunning:  # a file left by a killed run points nowhere: drop it
        PlatformState.path(data_dir).unlink(missing_ok=True)
    else:
        raise UpError(
            f"klambda is already running for {data_dir} (pid {running.pid}, "
            f"{running.gateway_url}); stop it first or pass another --data-dir"
        )
    objects = load_objects(options.files)
    _prepare_data_dir(data_dir, _separate_users())
    _setup_logging(data_dir)
    directory = FileDirectory(data_dir / "iam.json")
    admin_key = directory.ensure_admin()
    shutdown = Shutdown(options.shutdown_grace, out)
    shutdown.install(asyncio.get_running_loop())
    await _run(options, objects, data_dir, directory, admin_key, shutdown, out)
    # The backstop stays armed through the interpreter's own teardown (gRPC's and the
    # loop's exit hooks), so even a hang there ends within the bound.
    shutdown.step = "interpreter exit"
    return 0


async def _run(
    options: UpOptions,
    objects: list[ApiObject],
    data_dir: Path,
    directory: FileDirectory,
    admin_key: AccessKey,
    shutdown: Shutdown,
    out: TextIO,
) -> None:
    step = shutdown.named
    async with contextlib.AsyncExitStack() as stack:
        if options.redis_url:
            try:
                await ping(options.redis_url)
            except RedisUnavailable as e:
                raise UpError(str(e)) from e
            redis_url = options.redis_url
        else:
            try:
                redis = await EmbeddedRedis.start(data_dir / "redis", durability=options.durability)
            except RedisUnavailable as e:
                raise UpError(str(e)) from e
            stack.push_async_callback(step("the embedded Redis", redis.stop))
            redis_url = redis.url

        gateway_sock = _listen(options.host, options.port)
        stack.callback(gateway_sock.close)
        port = gateway_sock.getsockname()[1]
        gateway_url = f"http://{_display_host(options.host)}:{port}"
        admin_sock = _listen("127.0.0.1", 0)
        stack.callback(admin_sock.close)

        table = RoutingTable()
        state_file = StateFile.open(data_dir / "state" / "objects.db")
        stack.callback(state_file.close)
        store = ObjectStore(state_file)
        shim_key = secrets.token_bytes(KEY_BYTES)  # per run: shims start afresh each run
        platform = LocalPlatform(
            data_dir / "run",
            data_dir / "code",
            secrets=lambda ns: {o.name: o.spec for o in store.list("Secret", ns)},
            shim_key=shim_key,
            separate_users=_separate_users(),
        )
        stack.push_async_callback(step("function processes", platform.close))
        stats_client = aioredis.Redis.from_url(redis_url)
        stack.push_async_callback(stats_client.aclose)
        controller = Controller(
            store,
            platform,
            table,
            ControllerSettings(
                data_dir=data_dir,
                gateway_url=gateway_url,
                region=options.region,
                idle_timeout=options.idle_timeout,
                concurrency_limit=options.concurrency_limit,
                zygote=options.zygote,
            ),
            RedisSourceStats(stats_client),
        )

        platform.on_change = controller.shim_changed

        gateway_settings = GatewaySettings(
            host=options.host,
            port=port,
            region=options.region,
            concurrency_limit=options.concurrency_limit,
            redis_url=redis_url,
            async_consumer="klambda-up",
            async_retry_delay=options.async_retry_delay,
            busy_wait=0.0,  # one shim per version: it waited for its environments already
            shim_key=shim_key,
            async_key=await asyncio.to_thread(_async_key, data_dir / "state"),
        )
        gateway = await _serve(
            create_app(gateway_settings, table, directory, controller),
            gateway_sock,
            shutdown_timeout=options.shutdown_grace,
        )
        stack.push_async_callback(
            step("in-flight invocations (the gateway)", gateway.cleanup, drain=True)
        )
        token = secrets.token_urlsafe(32)
        admin = await _serve(
            create_admin_app(store, token, directory), admin_sock, shutdown_timeout=1.0
        )
        stack.push_async_callback(step("the admin API", admin.cleanup))
        admin_port = admin_sock.getsockname()[1]
        for obj in objects:
            await store.apply(obj)
        await controller.sync()  # every object once: routes are complete before we say so
        loop_task = asyncio.create_task(controller.run(), name="controller")

        async def stop_controller() -> None:
            await cancel_and_wait([loop_task])

        stack.push_async_callback(step("the controller", stop_controller))

        state = PlatformState(
            pid=os.getpid(),
            data_dir=str(data_dir),
            gateway_url=gateway_url,
            admin_url=f"http://127.0.0.1:{admin_port}",
            admin_token=token,
            redis_url=redis_url,
            region=options.region,
            access_key_id=admin_key.access_key_id,
            secret_access_key=admin_key.secret_access_key,
        )
        state.write()
        stack.callback(state.remove)
        _print_summary(out, state, store, platform.separate_users)

        await shutdown.requested.wait()
        print(
            f"\nstopping klambda (in-flight invocations get {options.shutdown_grace:g}s; "
            "Ctrl-C again to skip) ...",
            file=out,
            flush=True,
        )


def _async_key(state_dir: Path) -> bytes:
    """The key this data dir's async events are sealed with: kept (0600), since queued events
    outlive a restart."""
    path = state_dir / "async.key"
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    tmp.replace(path)
    return key


def _separate_users() -> bool:
    """Functions get uids of their own when klambda runs as root (``api.isolation``)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


def _prepare_data_dir(data_dir: Path, separate_users: bool) -> None:
    """Keys, tokens, code and logs: no other user reads any of it (0700, files 0600).

    When functions run under uids of their own they must reach their code, and only that: the
    data dir and ``code/`` let them pass (0711) without listing anything, and a code directory is
    named by its SHA-256, so only who has the code can name it; every other part stays 0700."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o711 if separate_users else 0o700)
    for part in ("run", "redis", "state", "logs"):
        (data_dir / part).mkdir(exist_ok=True)
        (data_dir / part).chmod(0o700)
    (data_dir / "code").mkdir(exist_ok=True)
    (data_dir / "code").chmod(0o711 if separate_users else 0o700)


def _isolation(separate_users: bool, data_dir: str) -> str:
    """One line on what this run isolates (docs/security.md says the rest)."""
    if not separate_users:
        return "functions run as your user: not isolated from each other (docs/security.md)"
    blocked = blocked_for_others([str(Path(data_dir, "code"))])
    if blocked is not None:
        return (
            f"functions run as root, since other users cannot pass {blocked} "
            "(use a --data-dir they can, e.g. /var/lib/klambda)"
        )
    blocked = blocked_for_others(runtime_files([sys.executable]))
    if blocked is None:
        return "each function runs as a user of its own"
    return (
        "each provided-runtime function runs as a user of its own; python functions run as "
        f"root, since other users cannot read {blocked}"
    )


def _print_summary(
    out: TextIO, state: PlatformState, store: ObjectStore, separate_users: bool
) -> None:
    lines = [
        f"klambda is running (data in {state.data_dir})",
        f"  gateway  {state.gateway_url}",
        f"  redis    {state.redis_url}",
        f"  users    {_isolation(separate_users, state.data_dir)}",
        "",
    ]
    functions = store.list("Function")
    if functions:
        width = max(len(f.name) for f in functions)
        lines.append("functions:")
        for fn in functions:
            url = fn.status.get("url") or f"(no URL: klambda invoke {fn.name})"
            ready = next((c for c in fn.status.get("conditions", []) if c["type"] == "Ready"), None)
            note = ""
            if ready and ready["status"] != "True":
                note = f"  [{ready['reason']}: {ready['message']}]"
            lines.append(f"  {fn.name:<{width}}  {url}{note}")
    else:
        lines.append("no functions yet: klambda apply -f <manifest>")
    lines += ["", 'use it from another shell: eval "$(klambda env)"; press Ctrl-C to stop']
    print("\n".join(lines), file=out, flush=True)
