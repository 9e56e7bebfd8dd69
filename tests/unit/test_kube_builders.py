"""The Kubernetes objects behind a function version (pure builders)."""

from __future__ import annotations

import base64
import json
from typing import Any

from klambda.api.objects import parse_object
from klambda.api.shim_config import ShimConfig
from klambda.controller.kube.builders import (
    KubeSettings,
    make_version_objects,
    resources,
)
from klambda.controller.kube.code_objects import (
    ANNOTATED_CODE_LIMIT,
    annotated_code,
    config_map_bytes,
    make_code_config_map,
    with_owner,
)
from klambda.controller.kube.network_policies import make_egress_policy, make_functions_policy
from klambda.kube import names

OWNER = names.owner_reference("Function", "hello", "uid-1")


def spec(**extra: Any) -> Any:
    doc = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello"},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "memorySize": 1769,
            "timeout": 30,
            "ephemeralStorage": 1024,
            "code": {"inline": {"app.py": "x"}},
            **extra,
        },
    }
    return parse_object(doc).spec


def shim_settings(objs: Any) -> dict[str, Any]:
    """The shim's settings as its container gets them (the variable ``--config-env`` names)."""
    shim = objs.deployment["spec"]["template"]["spec"]["containers"][0]
    variable = shim["command"][shim["command"].index("--config-env") + 1]
    (value,) = [e["value"] for e in shim["env"] if e["name"] == variable]
    return dict(json.loads(value))


def secret_env(container: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in container.get("env", []) if "valueFrom" in e]


def build(fspec: Any, version: str = "$LATEST", pc: int = 0, replicas: int = 0) -> Any:
    config = ShimConfig(
        "hello",
        version,
        fspec.runtime,
        "app.handler",
        "/somewhere",
        "arn:aws:lambda:us-east-1:1:function:hello",
        "/logs",
        memory_size=1769,
        timeout=30.0,
        config_hash="abc123",
        provisioned_concurrency=pc,
    )
    return make_version_objects(
        namespace="team",
        function="hello",
        version=version,
        spec=fspec,
        config=config,
        code_config_map="klambda-code-x",
        code_items=[{"key": "f0", "path": "app.py"}],
        owner=OWNER,
        replicas=replicas,
        settings=KubeSettings(),
    )


def test_deployment_shape() -> None:
    objs = build(spec(), replicas=2)
    d = objs.deployment
    assert d["metadata"]["name"] == "fn-hello-latest"
    assert d["metadata"]["namespace"] == "team"
    assert d["metadata"]["ownerReferences"] == [OWNER]
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["selector"]["matchLabels"][names.VERSION_LABEL] == "latest"
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "ghcr.io/klambda/runtime-python:3.12"
    assert c["resources"] == {
        "requests": {"cpu": "1000m", "memory": "1865Mi"},
        "limits": {"memory": "1865Mi"},
    }
    assert c["ports"] == [
        {"name": "grpc", "containerPort": 9000},
        {"name": "data", "containerPort": 9003},
        {"name": "health", "containerPort": 9002},
    ]
    # ready only while the shim can start an environment (tests/component/test_readiness.py)
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 9002}
    assert json.loads(c["env"][0]["value"])["health_port"] == 9002
    assert d["spec"]["template"]["metadata"]["labels"][names.CONFIG_HASH_LABEL] == "abc123"


def test_pods_are_hardened() -> None:
    pod = build(spec()).deployment["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = pod["containers"][0]["securityContext"]
    assert csc == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"] == {"sizeLimit": "1024Mi"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "default"


def test_role_mounts_a_token() -> None:
    pod = build(spec(role="reader")).deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "reader"
    assert pod["automountServiceAccountToken"] is True


def test_secret_refs_become_secret_key_refs_not_config() -> None:
    refs = {"DB_PASSWORD": {"name": "db", "key": "password"}, "API_KEY": {"name": "k", "key": "v"}}
    fspec = spec(environment={"variables": {"STAGE": "prod"}, "secretRefs": refs})
    objs = build(fspec)
    container = objs.deployment["spec"]["template"]["spec"]["containers"][0]
    assert secret_env(container) == [
        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "v"}}},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]
    assert "DB_PASSWORD" not in json.dumps(shim_settings(objs))  # names only, never values
    plain = build(spec()).deployment["spec"]["template"]["spec"]["containers"][0]
    assert secret_env(plain) == []


def image_spec(**extra: Any) -> Any:
    doc = {
        "apiVersion": "klambda.io/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello"},
        "spec": {"code": {"image": "registry.example.com/hello:1"}, "memorySize": 512, **extra},
    }
    return parse_object(doc).spec


def build_image(fspec: Any) -> Any:
    config = ShimConfig(
        "hello", "$LATEST", "", "", "/x", "arn:aws:lambda:us-east-1:1:function:hello", "/logs",
        memory_size=512, external_runtime=True, environment={"A": "1"},
    )  # fmt: skip
    return make_version_objects(
        namespace="team", function="hello", version="$LATEST", spec=fspec, config=config,
        code_config_map="", code_items=[], owner=OWNER, replicas=0, settings=KubeSettings(),
    )  # fmt: skip


def test_image_function_runs_its_image_beside_the_shim() -> None:
    refs = {"TOKEN": {"name": "api", "key": "token"}}
    fspec = image_spec(
        imageConfig={"command": ["app.handler"], "workingDirectory": "/srv"},
        environment={"variables": {"STAGE": "prod"}, "secretRefs": refs},
    )
    objs = build_image(fspec)
    pod = objs.deployment["spec"]["template"]["spec"]
    shim, function = pod["containers"]
    assert shim["image"] == KubeSettings().images["provided.al2023"]
    assert function["image"] == "registry.example.com/hello:1"
    assert function["args"] == ["app.handler"] and function["workingDir"] == "/srv"
    assert "command" not in function  # the image's ENTRYPOINT stays
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in function["env"]}
    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["STAGE"] == "prod"
    assert env["TOKEN"] == {"secretKeyRef": {"name": "api", "key": "token"}}
    assert secret_env(shim) == []  # Secret values go to the function container only
    assert function["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9002}
    assert function["livenessProbe"]["failureThreshold"] == 1
    assert function["resources"]["limits"]["memory"] == "512Mi"
    assert function["securityContext"]["readOnlyRootFilesystem"] is True
    assert {v["name"] for v in pod["volumes"]} == {"tmp", "shim-tmp", "logs"}
    settings = shim_settings(objs)
    assert settings["external_runtime"] is True
    assert (settings["runtime_api_port"], settings["health_port"]) == (9001, 9002)


def test_shim_settings_inside_the_pod() -> None:
    objs = build(spec(), version="3", pc=5)
    shim = shim_settings(objs)
    where = (shim["code_dir"], shim["grpc_host"], shim["grpc_port"], shim["data_port"])
    assert where == ("/var/task", "0.0.0.0", 9000, 9003)
    assert (shim["log_dir"], shim["log_to_stdout"]) == ("/var/log/klambda", True)
    assert (shim["max_environments"], shim["provisioned_concurrency"], shim["prewarm"]) == (1, 1, 0)
    assert objs.deployment["metadata"]["name"] == "fn-hello-v3"
    on_demand = shim_settings(build(spec()))
    assert (on_demand["provisioned_concurrency"], on_demand["prewarm"]) == (0, 1)


def test_cpu_follows_memory_with_a_floor() -> None:
    assert resources(128)["requests"]["cpu"] == "72m"
    assert resources(10240)["requests"]["cpu"] == "5789m"
    assert resources(64)["requests"]["cpu"] == "50m"


def test_network_policies() -> None:
    """One ingress policy per namespace selects every function pod (only gateways connect);
    a version with vpcConfig.egress adds its own egress policy (policies add up)."""
    np = make_functions_policy("team", KubeSettings())
    assert np["metadata"]["namespace"] == "team"
    assert np["spec"]["policyTypes"] == ["Ingress"]
    ingress = np["spec"]["ingress"][0]
    assert ingress["from"][0]["podSelector"]["matchLabels"] == names.GATEWAY_LABELS
    assert ingress["ports"] == [{"protocol": "TCP", "port": names.DATA_PORT}]  # gateways invoke
    pod_labels = build(spec()).deployment["spec"]["template"]["metadata"]["labels"]
    assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert build(spec()).egress_policy is None
    egress = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]}]
    own = build(spec(vpcConfig={"egress": egress})).egress_policy
    assert own["spec"]["policyTypes"] == ["Egress"] and own["spec"]["egress"] == egress
    assert own["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    fspec = spec(vpcConfig={"egress": egress})
    labels = names.labels("hello", "$LATEST")
    meta = {"name": "fn-hello-latest", "namespace": "team", "labels": labels}
    again = make_egress_policy("team", {**meta, "ownerReferences": [OWNER]}, fspec, KubeSettings())
    assert again == own
    # the namespace's default egress selects pods without vpcConfig only (tests/unit/
    # test_network_policy.py evaluates it)
    vpc_labels = build(fspec).deployment["spec"]["template"]["metadata"]["labels"]
    assert vpc_labels[names.VPC_LABEL] == "true" and names.VPC_LABEL not in pod_labels


def test_code_config_map_keeps_paths_and_is_immutable() -> None:
    cm = make_code_config_map(
        "team",
        "q83vEjQ1bbGVHYEfvnq31aJ0OZpV4WDyzmdT3Jrj6ik=",
        {"pkg/a.py": b"A", "bootstrap": b"B"},
        OWNER,
    )
    assert cm["immutable"] is True
    assert "binaryData" not in cm  # text only
    assert cm["metadata"]["name"].startswith("klambda-code-")
    items = json.loads(cm["metadata"]["annotations"]["klambda.io/code-items"])
    assert {i["path"]: cm["data"][i["key"]] for i in items} == {"pkg/a.py": "A", "bootstrap": "B"}
    assert all("/" not in k for k in cm["data"])
    (ref,) = cm["metadata"]["ownerReferences"]
    assert ref["uid"] == OWNER["uid"] and ref["controller"] is False  # shared: no controller
    other = {**OWNER, "uid": "uid-2", "name": "other"}
    refs = with_owner([ref], other)
    assert refs is not None and [r["uid"] for r in refs] == ["uid-1", "uid-2"]
    assert with_owner(refs, other) is None  # already an owner: nothing to write


def test_binary_files_go_to_binary_data_byte_for_byte() -> None:
    blob = bytes(range(256))  # not UTF-8
    files = {"lib/native.so": blob, "app.py": b"X = 1\n"}
    cm = make_code_config_map("team", "q83vEjQ1bbGVHYEfvnq31aJ0OZpV4WDyzmdT3Jrj6ik=", files, OWNER)
    items = json.loads(cm["metadata"]["annotations"]["klambda.io/code-items"])
    by_path = {i["path"]: i["key"] for i in items}
    assert cm["data"] == {by_path["app.py"]: "X = 1\n"}
    assert base64.b64decode(cm["binaryData"][by_path["lib/native.so"]]) == blob
    assert config_map_bytes({"a": blob}) == len(base64.b64encode(blob))


def test_lease_expiry() -> None:
    from klambda.kube.leader import expired

    spec = {"renewTime": "2026-11-22T10:00:00.000000Z", "leaseDurationSeconds": 15}
    renewed = 1795341600.0  # 2026-11-22T10:00:00Z
    assert not expired(spec, renewed + 14)
    assert expired(spec, renewed + 16)
    assert expired({}, renewed)  # never renewed: free to take


def test_small_text_code_rides_in_the_pod_template() -> None:
    """No code ConfigMap for small text code: the pod's own annotations hold it and a
    downwardAPI volume puts each file at its path, read-only and executable like /var/task."""
    files = {"app.py": b"def handler(e, c):\n    return 1\n", "lib/util.py": b"X = 1\n"}
    annotated = annotated_code(files)
    assert annotated is not None
    fspec = spec()
    objs = make_version_objects(
        namespace="team", function="hello", version="$LATEST", spec=fspec,
        config=ShimConfig("hello", "$LATEST", "python3.12", "app.handler", "/x", "arn", "/l"),
        code_config_map="", code_items=annotated.items, owner=OWNER, replicas=0,
        settings=KubeSettings(), code_annotations=annotated.data,
    )  # fmt: skip
    template = objs.deployment["spec"]["template"]
    (code,) = [v for v in template["spec"]["volumes"] if v["name"] == "code"]
    assert "configMap" not in code and code["downwardAPI"]["defaultMode"] == 0o555
    annotations = template["metadata"]["annotations"]
    by_path = {}
    for item in code["downwardAPI"]["items"]:
        key = item["fieldRef"]["fieldPath"].split("['")[1].rstrip("']")
        by_path[item["path"]] = annotations[key].encode()
    assert by_path == files


def test_binary_or_large_code_needs_a_config_map() -> None:
    assert annotated_code({"bin": b"\xff\xfe\x00"}) is None
    assert annotated_code({"big.py": b"#" * (ANNOTATED_CODE_LIMIT + 1)}) is None
    assert annotated_code({"ok.py": b"#" * ANNOTATED_CODE_LIMIT}) is not None
