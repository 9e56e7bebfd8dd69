"""A "process kubelet" for tests: runs klambda's Deployments as local shim processes.

It watches Deployments the operator created, and for each keeps ``spec.replicas`` pods of the
current template: it writes a Pod object, materialises the pod's volumes (the code
ConfigMap) into a directory, starts ``python -m klambda.shim --config-env`` with the settings
from the container's env, bound to a loopback address of its own (127.0.0.N, as a pod IP), and
marks the Pod Ready once the shim reports ready. Pods of an old template or beyond the replica
count are deleted first (so the gateway stops routing to them) and their processes drained.
Deployment status is written back as the real controllers do.

Containers after the first (a container image function's own container) run as processes too:
``IMAGES`` maps an image reference to what its container runs (a test registers its "images").
Each pod has its own loopback in Kubernetes; here pods share one, so ``127.0.0.1`` in their
settings and env is rewritten to the pod's address. Liveness probes (httpGet) restart the
container's process after ``failureThreshold`` failures, and an exited container is restarted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from klambda.api.lifecycle import die_with_parent
from klambda.kube import names
from klambda.kube.client import Conflict, KubeClient, KubeError, NotFound, path_for
from klambda.kube.informer import Informer
from tests.helpers import read_report, start_shim

log = logging.getLogger(__name__)

_addresses = itertools.count(2)
# Pod IPs are 127.<a>.<b>.<n>, a and b from the process id: test runs side by side (xdist, two
# sessions) must not share addresses, or one run's gateway reaches another's pods.
_SUBNET = f"127.{(os.getpid() >> 8) % 254 + 1}.{os.getpid() % 256}"


@dataclass(frozen=True)
class ImageRun:
    """What a container of an image runs: its ENTRYPOINT, CMD, WORKDIR and ENV."""

    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)


IMAGES: dict[str, ImageRun] = {}


@dataclass
class PodProcess:
    name: str
    namespace: str
    template_hash: str
    ip: str
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    containers: list[asyncio.Task[None]] = field(default_factory=list)
    """Supervisors of the pod's other containers."""
    restarts: int = 0


@dataclass
class ProcessKubelet:
    client: KubeClient
    work_dir: Path
    pods: dict[tuple[str, str], list[PodProcess]] = field(default_factory=dict)
    _replica_sets: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(namespace, name, Deployment uid) -> uid of the ReplicaSets made (they go with their
    Deployment)."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _starting: set[asyncio.Task[None]] = field(default_factory=set)
    _processes: list[PodProcess] = field(default_factory=list)

    async def start(self) -> None:
        self.deployments = Informer(
            self.client,
            path_for("apps", "v1", "deployments"),
            lambda *_: self._wake.set(),
            label_selector="app.kubernetes.io/managed-by=klambda",
        )
        self._tasks = [
            asyncio.create_task(self.deployments.run()),
            asyncio.create_task(self._loop()),
        ]
        await self.deployments.synced.wait()

    async def stop(self) -> None:
        for task in [*self._tasks, *self._starting]:
            task.cancel()
        for task in [*self._tasks, *self._starting]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pod in self._processes:  # every process started, wherever it was in its life
            await self._kill(pod)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            with contextlib.suppress(KubeError):
                await self.sync()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)

    async def sync(self) -> None:
        live = {}
        for (namespace, name), d in list(self.deployments.cache.items()):
            if d["metadata"].get("deletionTimestamp"):
                continue
            live[(namespace, name)] = d
            await self._sync_one(namespace, name, d)
        for key in list(self.pods):
            if key not in live:
                for pod in self.pods.pop(key):
                    await self._remove(pod)

    async def _sync_one(self, namespace: str, name: str, d: dict[str, Any]) -> None:
        wanted = int(d["spec"].get("replicas", 0))
        template = d["spec"]["template"]
        thash = template["metadata"]["labels"].get(names.CONFIG_HASH_LABEL, "")
        pods = self.pods.setdefault((namespace, name), [])
        for pod in [p for p in pods if p.process and p.process.returncode is not None]:
            pods.remove(pod)
            await self._remove(pod)
        current = [p for p in pods if p.template_hash == thash]
        old = [p for p in pods if p.template_hash != thash]
        while len(current) < wanted:
            pod = await self._create(namespace, name, d, thash)
            pods.append(pod)
            current.append(pod)
        if all(p.ready for p in current):  # roll: old pods go once new ones serve
            for pod in old:
                pods.remove(pod)
                await self._remove(pod)
        for pod in current[wanted:]:
            pods.remove(pod)
            await self._remove(pod)
        ready = sum(1 for p in pods if p.ready)
        with contextlib.suppress(NotFound):
            await self.client.patch(
                path_for("apps", "v1", "deployments", namespace, name, "status"),
                {
                    "status": {
                        "observedGeneration": d["metadata"].get("generation", 1),
                        "replicas": len(pods),
                        "readyReplicas": ready,
                        "availableReplicas": ready,
                        "updatedReplicas": len(current),
                    }
                },
            )

    async def _replica_set(
        self, namespace: str, deployment: str, d: dict[str, Any], thash: str
    ) -> str:
        """The uid of the ReplicaSet of this template, made as the Deployment controller does:
        labelled like the template, controlled by the Deployment."""
        name = f"{deployment}-{thash[:10]}"
        known = self._replica_sets.get((namespace, name, d["metadata"]["uid"]))
        if known is not None:
            return known
        template = d["spec"]["template"]
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**template["metadata"]["labels"], "pod-template-hash": thash[:10]},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": deployment,
                        "uid": d["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": d["spec"]["selector"]["matchLabels"]},
                "template": template,
            },
        }
        path = path_for("apps", "v1", "replicasets", namespace)
        try:
            created = await self.client.create(path, body)
        except Conflict:
            created = await self.client.get(f"{path}/{name}")
        uid = str(created["metadata"]["uid"])
        self._replica_sets[(namespace, name, d["metadata"]["uid"])] = uid
        return uid

    async def _create(
        self, namespace: str, deployment: str, d: dict[str, Any], thash: str
    ) -> PodProcess:
        owner = await self._replica_set(namespace, deployment, d, thash)
        name = f"{deployment}-{thash[:6]}-{secrets.token_hex(3)}"
        pod = PodProcess(name, namespace, thash, f"{_SUBNET}.{next(_addresses) % 254 + 1}")
        self._processes.append(pod)
        template = d["spec"]["template"]
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": template["metadata"]["labels"],
                "annotations": template["metadata"].get("annotations", {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{deployment}-{thash[:10]}",
                        "uid": owner,
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        await self.client.create(path_for("", "v1", "pods", namespace), body)
        task = asyncio.get_running_loop().create_task(self._run(pod, template))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return pod

    async def _env(self, namespace: str, container: dict[str, Any]) -> dict[str, str]:
        """The container's env, as a kubelet resolves it (value, or a Secret's key)."""
        out = {}
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                out[item["name"]] = item.get("value", "")
                continue
            secret = await self.client.get(path_for("", "v1", "secrets", namespace, ref["name"]))
            out[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        return out

    async def _run(self, pod: PodProcess, template: dict[str, Any]) -> None:
        spec = template["spec"]
        root = self.work_dir / pod.name
        await self._volumes(pod.namespace, template, root)
        shim = spec["containers"][0]
        env = {**os.environ, **await self._env(pod.namespace, shim)}
        variable = shim["command"][shim["command"].index("--config-env") + 1]
        config = json.loads(env[variable])
        config.update(
            grpc_host=pod.ip,
            runtime_api_host=pod.ip,
            code_dir=str(root / "var-task"),
            log_dir=str(root / "logs"),
        )
        env[variable] = json.dumps(config)
        pod.process, read_fd = await start_shim(None, config_env=variable, env=env)
        try:
            report = await read_report(read_fd, timeout=None)  # a pod may take its time
        except asyncio.CancelledError:
            await self._kill(pod)
            raise
        if not report or "port" not in report:
            return
        for container in spec["containers"][1:]:
            env = await self._env(pod.namespace, container)
            pod.containers.append(asyncio.create_task(self._supervise(pod, container, env)))
        await self._set_ready(pod, True)
        probe = shim.get("readinessProbe", {})
        if "httpGet" in probe:
            pod.containers.append(asyncio.create_task(self._probe_readiness(pod, probe)))

    async def _set_ready(self, pod: PodProcess, ready: bool) -> None:
        pod.ready = ready
        with contextlib.suppress(NotFound):
            await self.client.patch(
                path_for("", "v1", "pods", pod.namespace, pod.name, "status"),
                {
                    "status": {
                        "phase": "Running",
                        "podIP": pod.ip,
                        "conditions": [{"type": "Ready", "status": str(ready)}],
                    }
                },
            )
        self._wake.set()

    async def _probe_readiness(self, pod: PodProcess, probe: dict[str, Any]) -> None:
        """The shim container's readiness probe, as the kubelet runs it: ``failureThreshold``
        failures in a row make the pod NotReady, ``successThreshold`` successes Ready again."""
        period = float(probe.get("periodSeconds", 10))
        failing, passing = (
            int(probe.get("failureThreshold", 3)),
            int(probe.get("successThreshold", 1)),
        )
        url = f"http://{pod.ip}:{probe['httpGet']['port']}{probe['httpGet'].get('path', '/')}"
        failures = successes = 0
        async with aiohttp.ClientSession() as session:
            while True:
                await asyncio.sleep(period)
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                        ok = r.status < 400
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                failures, successes = (0, successes + 1) if ok else (failures + 1, 0)
                try:
                    if pod.ready and failures >= failing:
                        await self._set_ready(pod, False)
                    elif not pod.ready and successes >= passing:
                        await self._set_ready(pod, True)
                except KubeError as e:  # as a kubelet does: probe on, write again next time
                    log.warning("pod %s: readiness not written: %s", pod.name, e)
                    pod.ready = not pod.ready

    async def _supervise(
        self, pod: PodProcess, container: dict[str, Any], env: dict[str, str]
    ) -> None:
        """Runs one container's process for the pod's life: restarted on exit or failed probe."""
        image = IMAGES[container["image"]]
        argv = [
            *(container.get("command") or image.entrypoint),
            *(container.get("args") or image.cmd),
        ]
        loopback = {k: v.replace("127.0.0.1:", f"{pod.ip}:") for k, v in env.items()}
        environ = {"PATH": os.environ.get("PATH", ""), "HOME": "/tmp", **image.env, **loopback}
        probe = container.get("livenessProbe", {}).get("httpGet")
        while True:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=container.get("workingDir") or image.workdir,
                env=environ,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )
            try:
                await self._until_dead(pod, process, container, probe)
            finally:
                if process.returncode is None:
                    process.kill()
                await process.wait()
            pod.restarts += 1
            await asyncio.sleep(0.2)

    async def _until_dead(
        self,
        pod: PodProcess,
        process: asyncio.subprocess.Process,
        container: dict[str, Any],
        probe: dict[str, Any] | None,
    ) -> None:
        if probe is None:
            await process.wait()
            return
        period = float(container["livenessProbe"].get("periodSeconds", 10))
        threshold = int(container["livenessProbe"].get("failureThreshold", 3))
        url = f"http://{pod.ip}:{probe['port']}{probe.get('path', '/')}"
        failures = 0
        async with aiohttp.ClientSession() as session:
            while process.returncode is None and failures < threshold:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), period)
                    return
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                        failures = 0 if r.status < 400 else failures + 1
                except (aiohttp.ClientError, TimeoutError):
                    failures += 1

    async def _volumes(self, namespace: str, template: dict[str, Any], root: Path) -> None:
        spec = template["spec"]
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        for volume in spec.get("volumes", []):
            target = root / mounts.get(volume["name"], volume["name"]).strip("/").replace("/", "-")
            if "downwardAPI" in volume:
                _downward_api(volume["downwardAPI"], template["metadata"], target)
            cm = volume.get("configMap")
            if cm is None:
                continue
            target.mkdir(parents=True, exist_ok=True)
            found = await self.client.get(path_for("", "v1", "configmaps", namespace, cm["name"]))
            # as the kubelet does: data as UTF-8 text, binaryData as the bytes it encodes
            content = {k: v.encode() for k, v in found.get("data", {}).items()}
            content.update({k: base64.b64decode(v) for k, v in found.get("binaryData", {}).items()})
            items = cm.get("items") or [{"key": k, "path": k} for k in content]
            for item in items:
                file = target / item["path"]
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_bytes(content[item["key"]])
                file.chmod(cm.get("defaultMode", 0o644))

    async def _remove(self, pod: PodProcess) -> None:
        with contextlib.suppress(KubeError):
            await self.client.delete(path_for("", "v1", "pods", pod.namespace, pod.name))
        await self._kill(pod, drain=True)
        shutil.rmtree(self.work_dir / pod.name, ignore_errors=True)

    async def _kill(self, pod: PodProcess, drain: bool = False) -> None:
        for task in pod.containers:
            task.cancel()
        for task in pod.containers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        proc = pod.process
        if proc is None:
            return
        if proc.returncode is not None:
            await proc.wait()
            return
        proc.send_signal(signal.SIGTERM if drain else signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _downward_api(source: dict[str, Any], meta: dict[str, Any], target: Path) -> None:
    """A downwardAPI volume as the kubelet writes it: each item's file holds the pod field it
    names (``metadata.annotations['k']``, ``metadata.labels['k']``, name, namespace)."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.get("items", []):
        field_path = item["fieldRef"]["fieldPath"]
        found = re.fullmatch(r"metadata\.(annotations|labels)\['([^']+)'\]", field_path)
        if found:
            value = (meta.get(found.group(1)) or {}).get(found.group(2), "")
        else:
            value = str(meta.get(field_path.removeprefix("metadata."), ""))
        file = target / item["path"]
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(value)
        file.chmod(item.get("mode", source.get("defaultMode", 0o644)))
