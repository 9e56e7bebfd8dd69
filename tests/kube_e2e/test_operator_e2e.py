"""From ``kubectl apply`` to an HTTP response, on Kubernetes: the API double, or a real cluster.

Every test here runs once per backend (the ``cluster`` fixture's parameter):

- ``double``: a strict Kubernetes API double (``tests/kube``), and the process kubelet, which
  runs the pods the operator's Deployments ask for as local shim processes on 127.0.0.N;
- ``real``: the cluster ``$KUBECONFIG`` names, in a fresh namespace deleted afterwards, whose
  kubelets run the pods; skipped, with the reason shown, when ``KUBECONFIG`` is not set.

Either way the operator and the gateway run in this process, as ``klambda operator`` and
``klambda gateway`` would. What a real run needs and creates: ``tests/kube_e2e/README.md``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from klambda.controller.kube.operator import OperatorSettings
from klambda.controller.kube.operator import run as run_operator
from klambda.controller.platform.redis_server import EmbeddedRedis
from klambda.gateway.serve import run as run_gateway
from klambda.gateway.settings import GatewaySettings
from klambda.kube import names
from klambda.kube.client import KubeClient, KubeConfig, KubeError, NotFound, path_for
from tests.helpers import free_port
from tests.kube.double import KubeApiDouble
from tests.kube_e2e.kubelet import ProcessKubelet

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "charts/klambda/crds"

REAL_KUBECONFIG = os.environ.get("KUBECONFIG", "")
"""The real cluster's kubeconfig, as set when pytest started (empty: no real-cluster run)."""
README = "tests/kube_e2e/README.md"
IMAGES_DOC = "docs/install-kubernetes.md#build-the-images"
REAL_HINT = (
    f"; on a real cluster, check that the runtime images are on the nodes ({IMAGES_DOC}) and "
    f"that this machine routes to pod IPs, port {names.DATA_PORT} ({README})"
)
REAL_PATIENCE = 3.0
"""A real cluster schedules and starts pods, and collects garbage, slower: waits are longer."""
E2E_LABEL = "klambda.io/e2e"
"""Label of the namespaces real runs create (``kubectl delete ns -l klambda.io/e2e`` after a
run that was killed)."""
CRD_TIMEOUT = 45.0
SERVICE_ACCOUNT_TIMEOUT = 30.0
PROBE_DEPLOYMENT_TIMEOUT = 60.0
PROBE_POD_TIMEOUT = 120.0
PROBE_CONNECT_TIMEOUT = 20.0
NAMESPACE_DELETE_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
REAL_TIMEOUT = 1200
KEEP_WARM = 6.0
"""The gateway's keep-warm in these tests: unused versions scale back to zero after this."""
"""pytest-timeout's bound on one real-cluster case, set-up and tear-down included: above the
sum of the waits above and the tests' own, at their longest."""

_preflight: dict[str, str] = {}
"""The real cluster's pre-flight verdict ("" when it passed), checked once per session."""

log = logging.getLogger(__name__)


@dataclass
class Cluster:
    backend: str
    """``double`` or ``real``."""
    namespace: str
    """Where the tests' objects go: ``default`` on the double, a fresh one on a real cluster."""
    kubeconfig: Path
    client: KubeClient
    gateway_url: str
    tmp: Path
    patience: float = 1.0
    """Waits are this many times longer than on the double."""
    api: KubeApiDouble | None = None
    """The API double (None on a real cluster)."""
    redis_url: str | None = None
    """Redis the gateway uses (event sources); an embedded one on the double, else
    ``$KLAMBDA_E2E_REDIS_URL`` if set."""

    @property
    def real(self) -> bool:
        return self.backend == "real"

    def double_only(self, why: str) -> KubeApiDouble:
        """The API double, for a test that needs it; on a real cluster the test is skipped."""
        if self.api is None:
            pytest.skip(f"needs the Kubernetes API double, not a real cluster: {why}")
        return self.api

    def path(
        self, group: str, version: str, plural: str, name: str | None = None, sub: str | None = None
    ) -> str:
        """API path of ``plural`` (or one of them) in the test namespace."""
        return path_for(group, version, plural, self.namespace, name, sub)

    def url(self, function: str) -> str:
        """The path-form function URL: the URL id names the namespace unless it is default."""
        suffix = "" if self.namespace == "default" else f".{self.namespace}"
        return f"{self.gateway_url}/lambda-url/{function}{suffix}/"

    async def kubectl(
        self, *args: str, check: bool = True, namespaced: bool = True
    ) -> tuple[int, str, str]:
        """Runs kubectl against this cluster, in the test namespace unless ``namespaced`` is off."""
        argv = [KUBECTL or "kubectl", *([f"--namespace={self.namespace}"] if namespaced else [])]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            *args,
            env={
                **os.environ,
                "KUBECONFIG": str(self.kubeconfig),
                "KUBECACHEDIR": str(self.tmp / "kubecache"),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"kubectl {' '.join(args)}: no answer within 60 s") from None
        code = proc.returncode or 0
        if check and code != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {err.decode()}")
        return code, out.decode(), err.decode()

    async def function(self, name: str) -> dict[str, Any]:
        return await self.client.get(self.path("klambda.io", "v1alpha1", "functions", name))

    async def eventually(
        self, check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "condition"
    ) -> Any:
        """``eventually`` with this backend's patience; a real cluster's failure says what to
        check."""
        seconds = timeout * self.patience
        hint = REAL_HINT if self.real else ""
        return await eventually(check, seconds, f"{what}: not met within {seconds:.0f} s{hint}")

    async def service_account_token(self, name: str, audience: str | None = "klambda") -> str:
        """A token of ServiceAccount ``name`` (made if new), from the API (TokenRequest, as
        ``kubectl create token NAME --audience klambda`` gets one; ``audience`` None: the
        API server's own, as without ``--audience``)."""
        with contextlib.suppress(KubeError):  # already there
            await self.client.create(
                self.path("", "v1", "serviceaccounts"),
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
            )
        spec: dict[str, Any] = {"expirationSeconds": 3600}
        if audience is not None:
            spec["audiences"] = [audience]
        answer = await self.client.create(
            self.path("", "v1", "serviceaccounts", name, "token"),
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(answer["status"]["token"])


async def eventually(
    check: Any, timeout: float = 30.0, message: str = "condition not met in time"
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = await check()
            if value:
                return value
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------- backends


@contextlib.asynccontextmanager
async def platform(
    c: Cluster, port: int, shared_concurrency: bool = False
) -> AsyncIterator[tuple[asyncio.Task[int], ...]]:
    """The operator and the gateway, in this process; on a real cluster, confined to the test
    namespace (the operator's Lease included)."""
    stop = asyncio.Event()
    namespaces = [c.namespace] if c.real else None
    operator = asyncio.create_task(
        run_operator(
            OperatorSettings(
                kubeconfig=str(c.kubeconfig),
                gateway_url=c.gateway_url,
                resync_period=2.0,
                keep_warm=KEEP_WARM,
                namespaces=namespaces,
                lease_namespace=c.namespace,
            ),
            stop,
        )
    )
    gateway = asyncio.create_task(
        run_gateway(
            GatewaySettings(
                host="127.0.0.1",
                port=port,
                keep_warm=KEEP_WARM,
                redis_url=c.redis_url,
                shutdown_grace=2.0,  # a request still waiting on a pod is not this test's
                shared_concurrency=shared_concurrency,
            ),
            str(c.kubeconfig),
            namespaces,
            c.gateway_url,
            stop,
        )
    )
    finished = False
    try:
        yield operator, gateway
        finished = True
    finally:
        stop.set()
        tasks = {"operator": operator, "gateway": gateway}
        _, pending = await asyncio.wait(tasks.values(), timeout=STOP_TIMEOUT)
        for task in pending:
            task.cancel()
        if pending:  # a second chance, bounded too: a task may swallow its cancellation
            await asyncio.wait(pending, timeout=10)
        for task in tasks.values():  # errors are not this fixture's verdict (as before)
            if task.done() and not task.cancelled():
                task.exception()
        stuck = [name for name, task in tasks.items() if task in pending]
        if stuck:
            message = (
                f"the {' and the '.join(stuck)} did not stop within {STOP_TIMEOUT:.0f} s of "
                "being asked to"
            )
            if finished:
                raise AssertionError(message)
            log.error("%s", message)


@contextlib.asynccontextmanager
async def double_backend(
    tmp_path: Path, shared_concurrency: bool = False
) -> AsyncIterator[Cluster]:
    async with KubeApiDouble() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient(KubeConfig.load(str(kubeconfig)))
        port = free_port()
        c = Cluster(
            "double", "default", kubeconfig, client, f"http://127.0.0.1:{port}", tmp_path, api=api
        )
        kubelet = ProcessKubelet(client, tmp_path / "pods")
        (tmp_path / "redis").mkdir()
        redis = await EmbeddedRedis.start(tmp_path / "redis")
        c.redis_url = redis.url
        try:
            await c.kubectl("apply", "-f", str(CRDS), namespaced=False)
            await api.settle()
            async with platform(c, port, shared_concurrency):
                await kubelet.start()
                yield c
        finally:
            await kubelet.stop()
            await client.close()
            await redis.stop()


def real_kubeconfig() -> Path:
    """The one kubeconfig file of ``$KUBECONFIG``, if klambda's client can use it."""
    paths = [p for p in REAL_KUBECONFIG.split(os.pathsep) if p]
    if len(paths) != 1 or not Path(paths[0]).is_file():
        pytest.fail(
            f"KUBECONFIG={REAL_KUBECONFIG!r}: the real-cluster run needs it to name one "
            f"existing kubeconfig file ({README})"
        )
    path = Path(paths[0]).resolve()
    doc = yaml.safe_load(path.read_text()) or {}

    def named(section: str, name: Any) -> dict[str, Any]:
        items = doc.get(section) or []
        return next((i.get(section[:-1]) or {} for i in items if i.get("name") == name), {})

    user = named("users", named("contexts", doc.get("current-context")).get("user"))
    if "exec" in user or "auth-provider" in user:
        pytest.fail(
            f"{path}: the current context's user authenticates with an exec or auth-provider "
            "plugin, which klambda's Kubernetes client does not support (tokens and client "
            f"certificates only); use a kubeconfig with a token or certificate ({README})"
        )
    return path


@contextlib.asynccontextmanager
async def real_backend(tmp_path: Path) -> AsyncIterator[Cluster]:
    if _preflight.get("verdict"):  # an earlier test found the cluster unfit: say so at once
        pytest.fail(_preflight["verdict"], pytrace=False)
    kubeconfig = real_kubeconfig()
    client = KubeClient(KubeConfig.load(str(kubeconfig)))
    port = free_port()
    namespace = f"klambda-e2e-{secrets.token_hex(4)}"
    c = Cluster(
        "real",
        namespace,
        kubeconfig,
        client,
        f"http://127.0.0.1:{port}",
        tmp_path,
        patience=REAL_PATIENCE,
        redis_url=os.environ.get("KLAMBDA_E2E_REDIS_URL"),
    )
    try:
        await c.kubectl("apply", "-f", str(CRDS), namespaced=False)
        await c.kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={CRD_TIMEOUT:.0f}s",
            "-f",
            str(CRDS),
            namespaced=False,
        )
        try:
            await client.create(
                path_for("", "v1", "namespaces"),
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": {E2E_LABEL: "true"}},
                },
            )
        except KubeError as e:
            pytest.fail(
                f"klambda's Kubernetes client could not create namespace {namespace} with "
                f"{kubeconfig}: {e} (the run needs an administrator's token or certificate)"
            )
        finished = False
        try:
            await prepare_namespace(c)
            async with platform(c, port) as (operator, gateway):
                await preflight(c, operator, gateway)
                yield c
            finished = True
        finally:
            problem = await delete_namespace(client, namespace)
            if problem and finished:
                raise AssertionError(problem)
            if problem:
                log.error("%s", problem)
    finally:
        await client.close()


async def prepare_namespace(c: Cluster) -> None:
    """Waits for the namespace's ``default`` ServiceAccount (function pods run as it) and admits
    this machine to function pods: the gateway runs here, outside the cluster, so the operator's
    NetworkPolicies (ingress only from gateway pods) would turn its calls away."""

    async def account() -> bool:
        return bool(await c.client.get(c.path("", "v1", "serviceaccounts", "default")))

    await eventually(
        account,
        SERVICE_ACCOUNT_TIMEOUT,
        f"namespace {c.namespace} got no default ServiceAccount within "
        f"{SERVICE_ACCOUNT_TIMEOUT:.0f} s (is kube-controller-manager running?)",
    )
    await c.client.create(
        c.path("networking.k8s.io", "v1", "networkpolicies"),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "klambda-e2e-admit-test-runner"},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "klambda"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}],
                        "ports": [{"protocol": "TCP", "port": names.DATA_PORT}],
                    }
                ],
            },
        },
    )


async def delete_namespace(client: KubeClient, namespace: str) -> str | None:
    """Deletes the namespace and waits for it to go; what went wrong, if anything."""
    path = path_for("", "v1", "namespaces", name=namespace)
    try:
        await client.delete(path)
        deadline = asyncio.get_running_loop().time() + NAMESPACE_DELETE_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            try:
                await client.get(path)
            except NotFound:
                return None
            await asyncio.sleep(1.0)
    except KubeError as e:
        return f"could not delete namespace {namespace}: {e}; delete it by hand"
    return (
        f"namespace {namespace} was still there {NAMESPACE_DELETE_TIMEOUT:.0f} s after its "
        f"deletion (`kubectl get namespace {namespace} -o yaml` says what holds it)"
    )


PROBE = "e2e-probe"
FAIL_FAST = (
    "ErrImageNeverPull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
)
"""Pod states that will not get better by waiting."""


async def preflight(c: Cluster, operator: asyncio.Task[int], gateway: asyncio.Task[int]) -> None:
    """Before the first real-cluster test: a probe Function's pod must become Ready and be
    reachable at its IP, port 9003 (the data path), from here (where the gateway runs), in
    bounded time.

    A failure fails the test with what to fix, instead of every test waiting out its timeouts.
    """
    if "verdict" not in _preflight:
        try:
            _preflight["verdict"] = await _probe(c, operator, gateway)
        except KubeError as e:
            _preflight["verdict"] = f"pre-flight: {e}"
    if _preflight["verdict"]:
        pytest.fail(_preflight["verdict"], pytrace=False)


async def _probe(c: Cluster, operator: asyncio.Task[int], gateway: asyncio.Task[int]) -> str:
    loop = asyncio.get_running_loop()
    functions = c.path("klambda.io", "v1alpha1", "functions")
    deployment = c.path("apps", "v1", "deployments", f"fn-{PROBE}-latest")
    await c.client.create(
        functions,
        {
            "apiVersion": "klambda.io/v1alpha1",
            "kind": "Function",
            "metadata": {"name": PROBE},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "code": {"inline": {"app.py": "def handler(event, context):\n    return 1\n"}},
            },
        },
    )
    deadline = loop.time() + PROBE_DEPLOYMENT_TIMEOUT
    while True:
        for name, task in (("operator", operator), ("gateway", gateway)):
            if task.done():
                why = "cancelled" if task.cancelled() else repr(task.exception())
                return f"pre-flight: the {name} stopped: {why}"
        with contextlib.suppress(NotFound):
            await c.client.get(deployment)
            break
        if loop.time() > deadline:
            return (
                f"pre-flight: the operator created no Deployment for Function {PROBE} in "
                f"{c.namespace} within {PROBE_DEPLOYMENT_TIMEOUT:.0f} s"
            )
        await asyncio.sleep(0.5)
    await c.client.patch(f"{deployment}/scale", {"spec": {"replicas": 1}})
    pods_path = c.path("", "v1", "pods")
    selector = f"klambda.io/function={PROBE}"
    deadline = loop.time() + PROBE_POD_TIMEOUT
    while True:
        pods = (await c.client.list(pods_path, label_selector=selector)).get("items", [])
        ready = [p for p in pods if _ready(p) and p.get("status", {}).get("podIP")]
        if ready:
            pod = ready[0]
            break
        states = [_waiting(p) for p in pods]
        stuck = any(reason in FAIL_FAST for state in states for reason in state)
        if stuck or loop.time() > deadline:
            within = "" if stuck else f" within {PROBE_POD_TIMEOUT:.0f} s"
            return (
                f"pre-flight: no pod of Function {PROBE} in {c.namespace} became Ready{within} "
                f"({_describe(pods)}). The runtime images must be on the nodes, under the names "
                f"KubeSettings.images in controller/kube/builders.py gives them: see {IMAGES_DOC}"
            )
        await asyncio.sleep(1.0)
    ip = pod["status"]["podIP"]
    error: BaseException | None = None
    deadline = loop.time() + PROBE_CONNECT_TIMEOUT
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(ip, names.DATA_PORT), 5.0)
        except (OSError, TimeoutError) as e:
            error = e
            await asyncio.sleep(1.0)
            continue
        writer.close()
        await writer.wait_closed()
        await c.client.delete(f"{functions}/{PROBE}")
        return ""
    return (
        f"pre-flight: pod {pod['metadata']['name']} is Ready at {ip}, but "
        f"{ip}:{names.DATA_PORT} could not be reached from this machine within "
        f"{PROBE_CONNECT_TIMEOUT:.0f} s ({error!r}). The "
        "gateway runs here and calls function pods by IP: route the cluster's pod network to "
        f"its nodes{await _routes(c.client)} ({README})"
    )


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conditions)


def _waiting(pod: dict[str, Any]) -> list[str]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return [
        str(s["state"]["waiting"].get("reason"))
        for s in statuses
        if (s.get("state") or {}).get("waiting")
    ]


def _describe(pods: list[dict[str, Any]]) -> str:
    if not pods:
        return "no pod was created: `kubectl get events` in the namespace may say why"
    out = []
    for pod in pods:
        status = pod.get("status", {})
        notes = [
            f"{kind} {state.get('reason')}: {state.get('message', '')}".strip()
            for s in status.get("containerStatuses") or []
            for kind, state in (s.get("state") or {}).items()
            if kind in ("waiting", "terminated")
        ] + [
            f"{x.get('type')}={x.get('status')} {x.get('reason')}: {x.get('message', '')}".strip()
            for x in status.get("conditions") or []
            if x.get("status") != "True" and x.get("reason")
        ]
        out.append(f"pod {pod['metadata']['name']} {status.get('phase')}: {'; '.join(notes)}")
    return "; ".join(out)


async def _routes(client: KubeClient) -> str:
    """Routes that would do it, from the nodes' pod CIDRs and addresses (as with kind)."""
    try:
        nodes = (await client.list(path_for("", "v1", "nodes"))).get("items", [])
    except KubeError:
        return ""
    routes = []
    for node in nodes:
        cidr = node.get("spec", {}).get("podCIDR")
        addresses = node.get("status", {}).get("addresses") or []
        ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), None)
        if cidr and ip:
            routes.append(f"sudo ip route add {cidr} via {ip}")
    return f", e.g. {' && '.join(routes)}" if routes else ""


@pytest.fixture(params=["double", pytest.param("real", marks=pytest.mark.timeout(REAL_TIMEOUT))])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    if request.param == "double":
        async with double_backend(tmp_path) as c:
            yield c
        return
    if not REAL_KUBECONFIG:
        pytest.skip(
            "KUBECONFIG is not set: the real-cluster run of the Kubernetes e2e suite is "
            f"skipped (see {README})"
        )
    async with real_backend(tmp_path) as c:
        yield c


# ------------------------------------------------------------------------------------- tests


async def test_kubectl_apply_to_http_response(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", str(REPO / "examples/hello.yaml"))

    async def ready() -> bool:
        fn = await cluster.function("hello")
        conditions = fn.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    await cluster.eventually(ready, what="Function hello Ready")
    fn = await cluster.function("hello")
    assert fn["status"]["url"] == cluster.url("hello")
    assert fn["status"]["codeSha256"]
    deployment = await cluster.client.get(
        cluster.path("apps", "v1", "deployments", "fn-hello-latest")
    )
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "Function"
    assert deployment["spec"]["replicas"] == 0  # scaled to zero until invoked

    async def hello() -> dict[str, Any] | None:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{cluster.url('hello')}?name=ada", timeout=aiohttp.ClientTimeout(total=40)) as r,
        ):
            return await r.json() if r.status == 200 else None

    body = await cluster.eventually(hello, timeout=60, what="HTTP 200 from hello's function URL")
    assert body["message"] == "hello, ada!"
    _, out, _ = await cluster.kubectl("get", "fn")
    assert "hello" in out and "python3.11" in out
    _, described, _ = await cluster.kubectl("describe", "function", "hello")
    events = described.split("Events:", 1)[1]
    assert "EnvironmentReady" in events and "klambda-operator" in events, described

    await cluster.kubectl("delete", "fn", "hello")

    async def gone() -> bool:
        try:
            await cluster.client.get(cluster.path("apps", "v1", "deployments", "fn-hello-latest"))
        except Exception:  # NotFound: garbage collected through ownerReferences
            return True
        return False

    await cluster.eventually(gone, what="Deployment fn-hello-latest garbage-collected")


async def test_invalid_manifest_is_rejected_by_the_crd(cluster: Cluster) -> None:
    bad = cluster.tmp / "bad.yaml"
    bad.write_text(
        json.dumps(
            {
                "apiVersion": "klambda.io/v1alpha1",
                "kind": "Function",
                "metadata": {"name": "bad"},
                "spec": {
                    "runtime": "python3.11",
                    "handler": "a.h",
                    "memorySize": 50,
                    "code": {"inline": {"a.py": ""}},
                },
            }
        )
    )
    code, _, err = await cluster.kubectl("apply", "-f", str(bad), check=False)
    assert code != 0
    assert "spec.memorySize" in err and "128" in err


def aws_client(service: str, base: str, key_id: str, secret: str, **config: Any) -> Any:
    """A boto3 client of the gateway at ``base``, signed by a Secret principal's key pair; no
    retries (a test sees each answer)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=base,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **config),
    )


def secret(
    namespace: str, name: str, labels: dict[str, str], data: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def test_service_account_tokens_and_secret_keys(cluster: Cluster) -> None:
    """In-cluster callers authenticate with their ServiceAccount token (TokenReview); key
    pairs live in Secrets; both are held to their policies."""

    from klambda.api.arn import account_for

    await cluster.kubectl("apply", "-f", str(REPO / "examples/greeter.yaml"))
    arn = f"arn:aws:lambda:us-east-1:{account_for(cluster.namespace)}:function:greeter"
    invoke_only = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn}],
        }
    )
    secrets_path = cluster.path("", "v1", "secrets")
    await cluster.client.create(
        secrets_path,
        secret(
            cluster.namespace,
            "caller-policy",
            {"klambda.io/serviceaccount": "caller"},
            {"policy": invoke_only},
        ),
    )
    await cluster.client.create(
        secrets_path,
        secret(
            cluster.namespace,
            "ci-key",
            {"klambda.io/principal": "ci"},
            {
                "accessKeyId": "AKIAK8SSECRETKEY0001",
                "secretAccessKey": "k8s-secret-value",
                "policy": invoke_only,
            },
        ),
    )
    token = await cluster.service_account_token("caller")
    url = f"{cluster.gateway_url}/2015-03-31/functions/greeter/invocations"

    async def call(token: str, name: str = "greeter") -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                url.replace("greeter", name),
                data=b'{"name": "pod"}',
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=40),
            ) as r,
        ):
            return r.status, (await r.json() if r.content_type == "application/json" else {})

    async def greeted() -> bool:
        status, body = await call(token)
        return status == 200 and body.get("greeting") == "Bonjour, pod!"

    await cluster.eventually(
        greeted, timeout=60, what="greeter invoked with a ServiceAccount token"
    )
    junk = await call("not-a-token")
    assert junk[0] == 403
    # a token for the API server (kubectl create token without --audience klambda) is not one
    # for klambda: were it accepted, any function it was sent to could replay it at the API
    api_token = await cluster.service_account_token("caller", audience=None)
    assert await call(api_token) == junk
    await cluster.kubectl("apply", "-f", str(REPO / "examples/counter.yaml"))
    status, body = await call(token, "counter")
    assert status == 403 and "not authorized" in json.dumps(body)

    client = aws_client("lambda", cluster.gateway_url, "AKIAK8SSECRETKEY0001", "k8s-secret-value")
    result = await asyncio.to_thread(client.invoke, FunctionName="greeter", Payload=b"{}")
    assert json.loads(result["Payload"].read())["greeting"] == "Bonjour, world!"


SLOW = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: slow}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 10
  url: {authType: NONE}
  code:
    inline:
      app.py: |
        import os, time
        def handler(event, context):
            time.sleep(1.0)
            return {"pid": os.getpid()}
"""


async def test_busy_pods_scale_the_deployment_up(cluster: Cluster) -> None:
    manifest = cluster.tmp / "slow.yaml"
    manifest.write_text(SLOW)
    await cluster.kubectl("apply", "-f", str(manifest))

    async def call() -> int:
        async with (
            aiohttp.ClientSession() as s,
            s.get(cluster.url("slow"), timeout=aiohttp.ClientTimeout(total=60)) as r,
        ):
            return r.status

    # first pod up (scale from zero)
    await cluster.eventually(lambda: _ok(call), timeout=60, what="HTTP 200 from slow")
    statuses = await asyncio.gather(*(call() for _ in range(3)))
    assert statuses == [200, 200, 200]
    # the gateway reports the waiting calls as demand; the operator sizes the Deployment from
    # the report when it arrives, which on a busy machine can be after the calls are answered
    # (the demand counts for the keep-warm period, so the size holds meanwhile)

    async def grown() -> bool:
        deployment = await cluster.client.get(
            cluster.path("apps", "v1", "deployments", "fn-slow-latest")
        )
        return bool(deployment["spec"]["replicas"] >= 2)

    await cluster.eventually(grown, timeout=20, what="fn-slow-latest scaled to 2 replicas")


async def _ok(call: Any) -> bool:
    return bool(await call() == 200)
