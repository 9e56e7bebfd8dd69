"""RBAC authorization for callers that present a token the double knows.

The API server authorizes every request against the Roles and ClusterRoles bound to the caller
(``plugin/pkg/auth/authorizer/rbac``): a ClusterRoleBinding grants its rules everywhere, a
RoleBinding only in its own namespace. A rule matches when its ``apiGroups``, ``resources``
(``plural`` or ``plural/subresource``, ``*`` allowed) and ``verbs`` all match, and, if it has
``resourceNames``, the request names one of them (so a create or an unnamed list never
matches it). Discovery and health paths are open to every authenticated user, as the default
``system:discovery`` role makes them.

Callers with the admin token (the kubeconfig a test writes by default) are not authorized, so
tests that do not care about RBAC are untouched; a token from the token book (TokenRequest or
``add_token``) is. Every decision is kept in :attr:`Authorizer.decisions` with the rule that
allowed it, so a test can tell both what was refused and which granted rules were never used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .auth import UserInfo
from .errors import ApiError
from .registry import Registry
from .store import Store

_RBAC = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do (``authorizer.AttributesRecord``)."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Grant:
    """One verb on one resource of one rule: the unit a test checks for use."""

    role: str
    """``ClusterRole/name`` or ``Role/namespace/name``."""
    group: str
    resource: str
    verb: str
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    user: str
    attributes: Attributes
    grant: Grant | None
    """What allowed it; ``None`` when refused."""


@dataclass
class Authorizer:
    store: Store
    decisions: list[Decision] = field(default_factory=list)

    def authorize(self, user: UserInfo, attributes: Attributes) -> None:
        """Raise 403 Forbidden, worded as the API server words it, unless a rule allows it."""
        grant = next(
            (g for g in self._grants_of(user, attributes.namespace) if _allows(g, attributes)),
            None,
        )
        self.decisions.append(Decision(user.username, attributes, grant))
        if grant is None:
            raise forbidden(user.username, attributes)

    def check_owner_references(
        self, user: UserInfo, registry: Registry, attributes: Attributes, body: Any
    ) -> None:
        """OwnerReferencesPermissionEnforcement: setting ``blockOwnerDeletion`` on a reference
        needs ``update`` on the owner's ``finalizers`` subresource (the API server refuses it
        with 403 otherwise, where that admission plugin is on, as hardened clusters have it)."""
        metadata = body.get("metadata") if isinstance(body, dict) else None
        for ref in (metadata or {}).get("ownerReferences") or []:
            if not isinstance(ref, dict) or ref.get("blockOwnerDeletion") is not True:
                continue
            owner = registry.for_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
            if owner is None:
                continue
            wanted = Attributes(
                "update",
                owner.group,
                owner.plural,
                "finalizers",
                attributes.namespace,
                str(ref.get("name", "")),
            )
            grant = next(
                (g for g in self._grants_of(user, wanted.namespace) if _allows(g, wanted)), None
            )
            self.decisions.append(Decision(user.username, wanted, grant))
            if grant is None:
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{attributes.resource} "{attributes.name or metadata.get("name", "")}" is '
                    "forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a "
                    f"resource you can't set finalizers on: {forbidden(user.username, wanted)}",
                )

    def grants_of(self, user: UserInfo, namespace: str = "") -> list[Grant]:
        """Every grant bound to ``user`` (RoleBindings of ``namespace`` included)."""
        return list(self._grants_of(user, namespace))

    def _grants_of(self, user: UserInfo, namespace: str) -> list[Grant]:
        grants: list[Grant] = []
        bindings = list(self.store.items((_RBAC, "clusterrolebindings")))
        if namespace:
            bindings += self.store.items((_RBAC, "rolebindings"), namespace)
        for binding in bindings:
            if not any(_is(user, s, binding) for s in binding.get("subjects") or []):
                continue
            role = self._role(binding)
            if role is None:
                continue
            label, rules = role
            for rule in rules:
                grants += _expand(label, rule)
        return grants

    def _role(self, binding: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = self.store.get((_RBAC, "clusterroles"), "", ref.get("name", ""))
            label = f"ClusterRole/{ref.get('name')}"
        else:
            namespace = binding["metadata"].get("namespace", "")
            role = self.store.get((_RBAC, "roles"), namespace, ref.get("name", ""))
            label = f"Role/{namespace}/{ref.get('name')}"
        if role is None:
            return None
        return label, list(role.get("rules") or [])


def _is(user: UserInfo, subject: dict[str, Any], binding: dict[str, Any]) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding["metadata"].get("namespace", "")
        return user.username == f"system:serviceaccount:{namespace}:{name}"
    if kind == "User":
        return user.username == name
    if kind == "Group":
        return name in user.groups
    return False


def _expand(label: str, rule: dict[str, Any]) -> list[Grant]:
    names = tuple(rule.get("resourceNames") or ())
    return [
        Grant(label, group, resource, verb, names)
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    ]


def _allows(grant: Grant, a: Attributes) -> bool:
    if grant.group not in ("*", a.group) or grant.verb not in ("*", a.verb):
        return False
    resource_ok = grant.resource in ("*", a.full_resource) or (
        a.subresource != "" and grant.resource == f"*/{a.subresource}"
    )
    if not resource_ok:
        return False
    return not grant.resource_names or a.name in grant.resource_names


def unauthorized() -> ApiError:
    """A token the API server does not accept (here: minted for another audience)."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(username: str, a: Attributes) -> ApiError:
    """``NewForbidden`` with the RBAC authorizer's reason, as ``kubectl`` shows it."""
    group_resource = f"{a.resource}.{a.group}" if a.group else a.resource
    subject = f'{group_resource} "{a.name}"' if a.name else group_resource
    scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    reason = (
        f'User "{username}" cannot {a.verb} resource "{a.full_resource}" '
        f'in API group "{a.group}" {scope}'
    )
    details: dict[str, Any] = {"name": a.name} if a.name else {}
    if a.group:
        details["group"] = a.group
    details["kind"] = a.resource
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {reason}", details)
