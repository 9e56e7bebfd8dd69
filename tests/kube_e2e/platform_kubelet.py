"""The chart's own Deployments (operator, gateway) run as local processes, as a kubelet and
the Deployment controller would run them: so ``helm install`` and ``helm upgrade`` can be
tested end to end on the API double.

Each pod runs its container's ``command`` and ``args`` (``klambda`` is this interpreter's
``klambda.cli.main``), with ``$(VAR)`` expanded from its env (values, Secret keys, the downward
API's ``metadata.name``/``metadata.namespace``/``status.podIP``), and a kubeconfig holding a
token of the pod's ServiceAccount (what a pod gets mounted; the double authorizes it by RBAC).
A pod has an address of its own (127.x.y.n, as a pod IP): its processes bind ``--host`` to it.

Rolling updates follow the Deployment's strategy: pods of a new template are added up to
``maxSurge`` over the replica count, and old ones go only while ``maxUnavailable`` allows
(readiness counts: the readinessProbe's ``httpGet``, every ``periodSeconds``). A pod going away
leaves the Service's endpoints at once, runs its ``preStop`` (``sleep``), gets SIGTERM, and is
killed when ``terminationGracePeriodSeconds`` (counted from the start, preStop included) runs
out. :meth:`PlatformKubelet.endpoints` are the ready pods a Service would route to;
:class:`ServiceProxy` is the Service (kube-proxy: one backend per connection).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from klambda.kube.client import KubeClient, KubeError, path_for
from klambda.kube.informer import Informer

KLAMBDA = [sys.executable, "-m", "klambda.cli.main"]
"""What the platform image's ``klambda`` command is here."""
_SUBNET = f"127.{(os.getpid() >> 8) % 254 + 1}.{(os.getpid() + 128) % 256}"
_addresses = itertools.count(200)


@dataclass
class Pod:
    name: str
    deployment: str
    template_hash: str
    ip: str
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    terminating: bool = False
    port: int = 0
    exit_code: int | None = None
    killed: bool = False
    """Still running when its grace ran out (SIGKILL)."""
    started: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class PlatformKubelet:
    client: KubeClient
    namespace: str
    work_dir: Path
    kubeconfigs: dict[str, Path]
    """ServiceAccount name -> a kubeconfig with its token."""
    selector: str = "app.kubernetes.io/name=klambda"
    pods: list[Pod] = field(default_factory=list)
    gone: list[Pod] = field(default_factory=list)
    """Pods that went away, with how they ended."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.deployments = Informer(
            self.client,
            path_for("apps", "v1", "deployments", self.namespace),
            lambda *_: self._wake.set(),
            label_selector=self.selector,
        )
        self._spawn(self.deployments.run())
        await self.deployments.synced.wait()
        self._loop_task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Every pod as a node drain ends them (SIGTERM, then SIGKILL after 15 s)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for pod in self.pods:
            if pod.process is not None and pod.process.returncode is None:
                pod.process.send_signal(signal.SIGTERM)
        for pod in self.pods:
            if pod.process is not None:
                try:
                    await asyncio.wait_for(pod.process.wait(), 15)
                except TimeoutError:
                    pod.process.kill()
                    await pod.process.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def endpoints(self, deployment: str) -> list[tuple[str, int]]:
        """Where a Service of ``deployment`` sends new connections: ready, not terminating."""
        return [
            (p.ip, p.port)
            for p in self.pods
            if p.deployment == deployment and p.ready and not p.terminating
        ]

    def rolled_out(self, deployment: str) -> bool:
        """Every pod runs the current template, is ready, and no old pod is left."""
        d = self.deployments.cache.get((self.namespace, deployment))
        if d is None:
            return False
        mine = [p for p in self.pods if p.deployment == deployment]
        wanted = int(d["spec"].get("replicas", 1))
        return len(mine) == wanted and all(
            p.ready and not p.terminating and p.template_hash == _hash(d) for p in mine
        )

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            for (_, name), d in list(self.deployments.cache.items()):
                try:
                    await self._sync(name, d)
                except KubeError as e:  # as a controller does: again on the next round
                    print(f"platform kubelet: {name}: {e}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)

    async def _sync(self, name: str, d: dict[str, Any]) -> None:
        """One step of the Deployment controller's rolling update."""
        replicas = int(d["spec"].get("replicas", 1))
        surge, unavailable = _strategy(d, replicas)
        current = _hash(d)
        live = [p for p in self.pods if p.deployment == name and not p.terminating]
        new = [p for p in live if p.template_hash == current]
        old = [p for p in live if p.template_hash != current]
        while len(new) < replicas and len(new) + len(old) < replicas + surge:
            new.append(await self._create(name, d, current))
        for pod in new[replicas:]:
            self._terminate(pod, d)
        ready = sum(1 for p in new + old if p.ready)
        for pod in sorted(old, key=lambda p: p.ready):  # not-ready old pods go first
            if pod.ready and ready - 1 < replicas - unavailable:
                break
            ready -= pod.ready
            self._terminate(pod, d)
        await self._write_status(name, d, current)

    async def _write_status(self, name: str, d: dict[str, Any], current: str) -> None:
        mine = [p for p in self.pods if p.deployment == name]
        ready = sum(1 for p in mine if p.ready and not p.terminating)
        status = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": len(mine),
            "updatedReplicas": sum(1 for p in mine if p.template_hash == current),
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if d.get("status", {}) != status:
            path = path_for("apps", "v1", "deployments", self.namespace, name, "status")
            with contextlib.suppress(KubeError):
                await self.client.patch(path, {"status": status})

    async def _create(self, deployment: str, d: dict[str, Any], thash: str) -> Pod:
        pod = Pod(
            f"{deployment}-{thash[:8]}-{os.urandom(3).hex()}",
            deployment,
            thash,
            f"{_SUBNET}.{next(_addresses) % 54 + 200}",
        )
        self.pods.append(pod)
        self._spawn(self._run(pod, d["spec"]["template"]))
        return pod

    async def _run(self, pod: Pod, template: dict[str, Any]) -> None:
        spec = template["spec"]
        (container,) = spec["containers"]
        env = await self._env(pod, container)

        def expand(arg: str) -> str:
            return re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), arg)

        command = container["command"]
        assert command[0] == "klambda", command
        argv = [*KLAMBDA, *command[1:], *(expand(a) for a in container.get("args", []))]
        argv += ["--kubeconfig", str(self.kubeconfigs[spec["serviceAccountName"]])]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if ports:  # a pod's processes listen on its own address
            argv.append(f"--host={pod.ip}")
            pod.port = next(iter(ports.values()))
        log = (self.work_dir / f"{pod.name}.log").open("wb")
        pod.process = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        pod.started.set()
        probe = container.get("readinessProbe", {})
        if "httpGet" not in probe:
            pod.ready = True  # no probe: ready once running
            self._wake.set()
            return
        port = probe["httpGet"]["port"]
        url = f"http://{pod.ip}:{ports.get(port, port)}{probe['httpGet'].get('path', '/')}"
        self._spawn(self._probe(pod, url, float(probe.get("periodSeconds", 10))))

    async def _probe(self, pod: Pod, url: str, period: float) -> None:
        async with aiohttp.ClientSession() as session:
            while pod.process is not None and pod.process.returncode is None:
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                        ok = r.status < 400
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok != pod.ready:
                    pod.ready = ok
                    self._wake.set()
                await asyncio.sleep(period)

    async def _env(self, pod: Pod, container: dict[str, Any]) -> dict[str, str]:
        fields = {"metadata.name": pod.name, "metadata.namespace": self.namespace}
        fields["status.podIP"] = pod.ip
        env: dict[str, str] = {}
        for item in container.get("env", []):
            source = item.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                found = await self.client.get(
                    path_for("", "v1", "secrets", self.namespace, ref["name"])
                )
                env[item["name"]] = base64.b64decode(found["data"][ref["key"]]).decode()
            elif "fieldRef" in source:
                env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
            else:
                env[item["name"]] = str(item.get("value", ""))
        return env

    def _terminate(self, pod: Pod, d: dict[str, Any]) -> None:
        pod.terminating = True  # out of the endpoints at once
        spec = d["spec"]["template"]["spec"]
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        pre_stop = spec["containers"][0].get("lifecycle", {}).get("preStop", {})
        pause = float(pre_stop.get("sleep", {}).get("seconds", 0))
        self._spawn(self._end(pod, grace, pause))

    async def _end(self, pod: Pod, grace: float, pause: float) -> None:
        started = time.monotonic()
        await pod.started.wait()  # it may be ended before its process started
        assert pod.process is not None
        await asyncio.sleep(pause)
        if pod.process.returncode is None:
            pod.process.send_signal(signal.SIGTERM)
        left = max(0.0, grace - (time.monotonic() - started))
        try:
            await asyncio.wait_for(pod.process.wait(), left)
        except TimeoutError:
            pod.killed = True
            pod.process.kill()
            await pod.process.wait()
        pod.exit_code = pod.process.returncode
        self.pods.remove(pod)
        self.gone.append(pod)
        self._wake.set()


def _hash(d: dict[str, Any]) -> str:
    template = json.dumps(d["spec"]["template"], sort_keys=True).encode()
    return hashlib.sha256(template).hexdigest()[:16]


def _strategy(d: dict[str, Any], replicas: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as counts: percentages round up and down, as Kubernetes
    rounds them; both zero is not allowed, so surge is then 1."""
    rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}

    def count(value: Any, up: bool) -> int:
        if isinstance(value, str) and value.endswith("%"):
            exact = replicas * int(value[:-1]) / 100
            return math.ceil(exact) if up else math.floor(exact)
        return int(value)

    surge = count(rolling.get("maxSurge", "25%"), True)
    unavailable = count(rolling.get("maxUnavailable", "25%"), False)
    return (surge or (0 if unavailable else 1)), unavailable


@dataclass
class ServiceProxy:
    """A Service's virtual address: each new connection goes to one ready endpoint, in turn
    (kube-proxy's choice), and stays with it; none ready means the connection is refused."""

    kubelet: PlatformKubelet
    deployment: str
    port: int = 0
    _server: asyncio.Server | None = None
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            endpoints = self.kubelet.endpoints(self.deployment)
            if not endpoints:
                return
            host, port = endpoints[next(self._turn) % len(endpoints)]
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()
