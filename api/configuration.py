"""Lambda's FunctionConfiguration and AliasConfiguration documents (pure), as GetFunction,
ListFunctions, ListVersionsByFunction and ListAliases return them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from klambda.api.arn import account_for, function_arn
from klambda.api.routes import LATEST
from klambda.api.types import FunctionSpec


def lambda_time(iso: str) -> str:
    """``2026-11-22T10:00:00Z`` -> Lambda's ``2026-11-22T10:00:00.000+0000``."""
    if not iso:
        return ""
    return iso.replace("Z", "").split(".")[0] + ".000+0000"


def revision_id(*parts: Any) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def function_configuration(
    *,
    namespace: str,
    name: str,
    region: str,
    spec: FunctionSpec,
    version: str,
    description: str,
    code_sha256: str,
    code_size: int,
    last_modified: str,
    state: str,
    qualified: bool,
) -> dict[str, Any]:
    account = account_for(namespace)
    arn = function_arn(region, account, name, version if qualified else None)
    config: dict[str, Any] = {
        "FunctionName": name,
        "FunctionArn": arn,
        "Runtime": spec.runtime,
        "Role": f"arn:aws:iam::{account}:role/klambda-default",
        "Handler": spec.handler or "",
        "CodeSize": code_size,
        "Description": description,
        "Timeout": spec.timeout,
        "MemorySize": spec.memory_size,
        "LastModified": lambda_time(last_modified),
        "CodeSha256": code_sha256,
        "Version": version,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": revision_id(name, version, code_sha256, spec.timeout, spec.memory_size),
        "State": state,
        "LastUpdateStatus": "Successful" if state == "Active" else "InProgress",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": spec.ephemeral_storage},
    }
    if spec.env:
        config["Environment"] = {"Variables": spec.env}
    if spec.is_image:  # Lambda's shape for container images: no runtime or handler
        del config["Runtime"], config["Handler"]
        config["PackageType"] = "Image"
        image = spec.image_config
        if image is not None:
            overrides = {
                "EntryPoint": image.entry_point,
                "Command": image.command,
                "WorkingDirectory": image.working_directory,
            }
            config["ImageConfigResponse"] = {
                "ImageConfig": {k: v for k, v in overrides.items() if v is not None}
            }
    if state == "Failed":
        config["LastUpdateStatus"] = "Failed"
    if version == LATEST and not qualified:
        config["Version"] = LATEST
    return config
