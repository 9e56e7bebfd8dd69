"""The Kubernetes platform: each function version is a Deployment of shim pods.

Implements the controller's platform port with the pure builders (``builders``) and the API
client: small text code and the shim's settings go into the pod template (the code mounted by a
downwardAPI volume), larger or binary code into an immutable ConfigMap named by its CodeSha256;
pods come from a Deployment owned by the Function (for $LATEST) or the Version (published
versions), so deleting either cascades; one NetworkPolicy per namespace admits only gateways to
function pods. Starting a version costs one write (its Deployment), two with a code ConfigMap.
Replicas follow provisioned concurrency and the gateways' demand reports (``scale``, the one
writer). The platform never deletes what it does not own, and leaves everything running on
shutdown.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from klambda.api import defaults, scaling
from klambda.api.objects import FunctionKey
from klambda.api.reasons import Reason
from klambda.api.shim_auth import caller_token
from klambda.api.shim_config import ShimConfig
from klambda.api.types import Code, FunctionSpec
from klambda.controller.code import CodeBundle, CodeFetchFailed, fetch_files
from klambda.controller.kube import builders, code_objects
from klambda.controller.kube.policies import FunctionsPolicies
from klambda.controller.platform import Observation, StartFailed
from klambda.controller.reconcile import RunningShim, ShimKey
from klambda.kube import names
from klambda.kube.client import Conflict, KubeClient, KubeError, NotFound, path_for
from klambda.kube.informer import Informer
from klambda.kube.pods import VersionPods
from klambda.kube.workloads import deployments_path, function_key_of, version_key_of

log = logging.getLogger(__name__)

CODE_LIMIT = 900 * 1024  # a ConfigMap holds at most 1 MiB, metadata included
CONFLICT_RETRIES = 5
PROVISIONED_ANNOTATION = "klambda.io/provisioned"


@dataclass(frozen=True)
class KubeCode:
    """This platform's handle on prepared code: the files of the code ConfigMap (bytes, so
    binary files survive), or None for a container image, whose code is the image."""

    files: Mapping[str, bytes] | None


OwnerLookup = Callable[[ShimKey], dict[str, Any] | None]
"""The ownerReference for a version's objects: its Function ($LATEST) or Version object."""


class KubePlatform:
    pushes_observations = True  # pods and Deployments are watched: every change is announced

    def __init__(
        self,
        client: KubeClient,
        settings: builders.KubeSettings,
        owner_of: OwnerLookup,
        on_change: Callable[[ShimKey], None] = lambda key: None,
        keep_warm: float = defaults.KEEP_WARM,
        clock: Callable[[], float] = time.time,
        code_hosts: tuple[str, ...] = ("*",),
    ) -> None:
        """``code_hosts``: shell patterns of the hosts ``code.zip`` URLs may name."""
        self.client = client
        self.settings = settings
        self.owner_of = owner_of
        self.on_change = on_change
        self.keep_warm = keep_warm
        self.clock = clock
        self.code_hosts = code_hosts
        self.shim_key = b""
        """The platform key (``kube.shim_key``); the operator sets it once it leads."""
        self.deployments = Informer(
            client,
            deployments_path(),
            self._changed,
            label_selector=names.MANAGED_SELECTOR,
            index=function_key_of,
        )
        self.version_pods = VersionPods(client, self._changed)
        self.pods, self.replica_sets = self.version_pods.informers
        self.network_policies = FunctionsPolicies(client, settings)

    def _changed(self, kind: str, old: Any, new: Any) -> None:
        key = version_key_of(new or old)
        if key is not None:
            self.on_change(key)

    # ------------------------------------------------------------------ observation

    def _deployment(self, key: ShimKey) -> dict[str, Any] | None:
        namespace, function, version = key
        return self.deployments.cache.get((namespace, names.deployment_name(function, version)))

    def running(self, function: FunctionKey | None = None) -> dict[ShimKey, RunningShim]:
        found = (
            self.deployments.cache.values()
            if function is None
            else self.deployments.indexed(function)
        )
        out = {}
        for d in found:
            key = version_key_of(d)
            if key is None or d["metadata"].get("deletionTimestamp"):
                continue
            labels = d["metadata"].get("labels", {})
            config_hash = labels.get(names.CONFIG_HASH_LABEL, "")
            out[key] = RunningShim(*key, config_hash, _provisioned(d))
        return out

    def endpoints(self, key: ShimKey) -> tuple[str, ...]:
        return self.version_pods.endpoints(key)

    async def observe(self, key: ShimKey) -> Observation | None:
        """From the cache: pods (one environment each), and the gateways' demand reports
        (what their invocations use now, and when they last invoked the version)."""
        d = self._deployment(key)
        if d is None:
            return None
        provisioned = _provisioned(d)
        ready = len(self.endpoints(key))
        now = self.clock()
        demands = scaling.live(scaling.demands_of(d["metadata"].get("annotations") or {}), now)
        used = max((r.last_used for r in demands), default=None)
        in_use = [r.wanted for r in demands if now - r.last_used < self.keep_warm]
        return Observation(
            int(d.get("spec", {}).get("replicas", 0)),
            min(ready, max(in_use, default=0)),
            provisioned,
            min(ready, provisioned),
            max(0.0, now - used) if used is not None else 0.0,
        )

    # ------------------------------------------------------------------ code

    async def prepare_code(
        self,
        code: Code,
        config_maps: Mapping[str, Mapping[str, str]],
        pinned_sha256: str | None,
        version: str,
    ) -> CodeBundle[KubeCode]:
        if code.image is not None:  # the image is the code; its reference stands for its hash
            digest = base64.b64encode(hashlib.sha256(code.image.encode()).digest()).decode()
            return CodeBundle(digest, 0, KubeCode(None))
        if code.zip is not None and not code.zip.startswith(("http://", "https://")):
            raise StartFailed(
                Reason.CODE_FETCH_FAILED,
                f"zip {code.zip!r} is a local path: on Kubernetes give an http(s) URL",
                permanent=True,
            )
        try:
            # at most what a ConfigMap holds: a larger answer is never downloaded whole
            fetched = await fetch_files(code, config_maps, CODE_LIMIT, self.code_hosts)
        except CodeFetchFailed as e:
            where = f"{code.zip}: " if code.zip else ""
            raise StartFailed(Reason.CODE_FETCH_FAILED, f"{where}{e}") from e
        if pinned_sha256 is not None and pinned_sha256 != fetched.sha256:
            raise StartFailed(
                Reason.CODE_FETCH_FAILED,
                f"the code of version {version} is gone and its source now holds other code",
                permanent=True,
            )
        stored = code_objects.config_map_bytes(fetched.files)
        if stored > CODE_LIMIT:
            raise StartFailed(
                Reason.CODE_TOO_LARGE,
                f"{stored} bytes of code do not fit a ConfigMap ({CODE_LIMIT} at most)",
                permanent=True,
            )
        return CodeBundle(
            fetched.sha256, fetched.size, KubeCode(fetched.files), frozenset(fetched.files)
        )

    async def _ensure_code(
        self, namespace: str, sha: str, files: Mapping[str, bytes], owner: dict[str, Any]
    ) -> tuple[str, list[dict[str, str]]]:
        manifest = code_objects.make_code_config_map(namespace, sha, files, owner)
        name = manifest["metadata"]["name"]
        try:
            await self.client.create(path_for("", "v1", "configmaps", namespace), manifest)
        except Conflict:  # identical code, already there (immutable): share it
            await self._add_owner(path_for("", "v1", "configmaps", namespace, name), owner)
        return name, code_objects.code_files(files).items

    async def _add_owner(self, path: str, owner: dict[str, Any]) -> None:
        """Adds ``owner`` to the object's ownerReferences, so that garbage collection waits for
        every user. Optimistic: the patch names the resourceVersion it read, and a 409 (someone
        else changed it meanwhile) means read again."""
        for _ in range(CONFLICT_RETRIES):
            current = await self.client.get(path)
            meta = current["metadata"]
            refs = code_objects.with_owner(meta.get("ownerReferences") or [], owner)
            if refs is None:
                return
            patch = {
                "metadata": {"ownerReferences": refs, "resourceVersion": meta["resourceVersion"]}
            }
            try:
                await self.client.patch(path, patch)
                return
            except Conflict:
                continue
        raise StartFailed(Reason.CONFLICT, f"{path} kept changing; will retry")

    # ------------------------------------------------------------------ changes

    async def start(
        self,
        config: ShimConfig,
        code: CodeBundle[KubeCode],
        spec: FunctionSpec,
    ) -> None:
        # secretRefs become the pod's env (secretKeyRef): the kubelet reads the Secrets
        key = (config.namespace, config.function_name, config.version)
        if not self.shim_key:
            raise StartFailed(Reason.APPLY_FAILED, "the platform key is not loaded yet")
        config = replace(config, caller_token=caller_token(self.shim_key, *key))
        owner = self.owner_of(key)
        if owner is None:
            raise StartFailed(Reason.OWNER_NOT_FOUND, "the owning object is gone")
        code_map, items = "", list[dict[str, str]]()
        annotated = code_objects.annotated_code(code.ref.files) if code.ref.files else None
        if annotated is not None:  # small text code rides in the pod template
            items = annotated.items
        elif code.ref.files is not None:  # not an image
            code_map, items = await self._ensure_code(
                config.namespace, code.sha256, code.ref.files, owner
            )
        current = self._deployment(key)
        replicas = max(
            config.provisioned_concurrency,
            int(current["spec"].get("replicas", 0)) if current else 0,
        )
        objs = builders.make_version_objects(
            namespace=config.namespace,
            function=config.function_name,
            version=config.version,
            spec=spec,
            config=config,
            code_config_map=code_map,
            code_items=items,
            owner=owner,
            replicas=replicas,
            settings=self.settings,
            code_annotations=annotated.data if annotated is not None else None,
        )
        objs.deployment["metadata"].setdefault("annotations", {})[PROVISIONED_ANNOTATION] = str(
            config.provisioned_concurrency
        )
        try:
            await self.network_policies.ensure(config.namespace)
            if objs.egress_policy is not None:
                await self._apply(objs.egress_policy)
            # seen at once by running(): the function's status says Ready in this reconcile
            self.deployments.assume(await self._apply(objs.deployment))
        except KubeError as e:
            raise StartFailed(Reason.APPLY_FAILED, str(e)) from e

    async def _apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create, or replace what exists (level-based: the manifest is the whole truth)."""
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        group, _, version = api_version.rpartition("/")
        plural = {
            "ConfigMap": "configmaps",
            "Deployment": "deployments",
            "NetworkPolicy": "networkpolicies",
        }[kind]
        meta = manifest["metadata"]
        collection = path_for(group, version, plural, meta["namespace"])
        try:
            return await self.client.create(collection, manifest)
        except Conflict:
            path = path_for(group, version, plural, meta["namespace"], meta["name"])
            existing = await self.client.get(path)
            if not _owned_by_us(existing, meta["ownerReferences"][0]["uid"]):
                raise StartFailed(
                    Reason.NOT_OWNED,
                    f"{kind} {meta['name']} exists and is not klambda's: refusing to change it",
                    permanent=True,
                ) from None
            if kind == "Deployment":
                # demand may have scaled it up: never shrink below the running replicas
                manifest["spec"]["replicas"] = max(
                    manifest["spec"]["replicas"], int(existing["spec"].get("replicas", 0))
                )
            manifest = {
                **manifest,
                "metadata": {**meta, "resourceVersion": existing["metadata"]["resourceVersion"]},
            }
            return await self.client.replace(path, manifest)

    async def stop(self, key: ShimKey) -> None:
        namespace, function, version = key
        name = names.deployment_name(function, version)
        for path in (
            deployments_path(namespace, name),
            path_for("networking.k8s.io", "v1", "networkpolicies", namespace, name),
        ):
            try:
                await self.client.delete(path)
            except NotFound:
                pass
            except KubeError as e:
                log.warning("deleting %s: %s", path, e)

    async def provision(self, key: ShimKey, count: int) -> None:
        """Sets the version's provisioned concurrency; its size follows (``scale``)."""
        await self._resize(key, count)

    async def scale(self, key: ShimKey) -> float | None:
        """Sizes the version from its provisioned concurrency and the gateways' demand reports
        (``klambda.api.scaling``). The operator is the only writer of ``replicas``."""
        d = self._deployment(key)
        if d is None:
            return None
        await self._resize(key, _provisioned(d))
        demands = scaling.demands_of(d["metadata"].get("annotations") or {})
        return scaling.next_change(demands, self.clock(), self.keep_warm)

    async def _resize(self, key: ShimKey, provisioned: int) -> None:
        """Writes replicas (and the provisioned annotation) with the resourceVersion it decided
        from; on 409 someone changed the Deployment meanwhile: read it again, decide again."""
        d = self._deployment(key)
        for _ in range(CONFLICT_RETRIES):
            if d is None:
                return
            meta = d["metadata"]
            current = int(d["spec"].get("replicas", 0))
            demands = scaling.demands_of(meta.get("annotations") or {})
            target = scaling.desired_replicas(
                provisioned, current, demands, self.clock(), self.keep_warm
            )
            if target == current and _provisioned(d) == provisioned:
                return
            path = deployments_path(meta["namespace"], meta["name"])
            patch = {
                "metadata": {
                    "annotations": {PROVISIONED_ANNOTATION: str(provisioned)},
                    "resourceVersion": meta["resourceVersion"],
                },
                "spec": {"replicas": target},
            }
            try:
                self.deployments.assume(await self.client.patch(path, patch))
                return
            except NotFound:
                return
            except Conflict:
                d = await self.client.get(path)
        log.warning("%s/%s:%s kept changing; sizing it again next pass", *key)

    async def close(self) -> None:
        """Leaves every Deployment running: the operator stopping is not the functions stopping."""
        await self.network_policies.stop()


def _provisioned(deployment: dict[str, Any]) -> int:
    annotations = deployment["metadata"].get("annotations") or {}
    return int(annotations.get(PROVISIONED_ANNOTATION, "0"))


def _owned_by_us(obj: dict[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)
