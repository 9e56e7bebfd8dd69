"""Gateway settings: typed, read once, passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from klambda.api import defaults

MB = 1024 * 1024


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    """Address the gateway binds; loopback unless told otherwise."""
    port: int = defaults.GATEWAY_PORT
    """Port for function URLs, the Invoke API and /metrics."""
    url_domain: str = "lambda-url.localhost"
    """Host-name suffix of host-based function URLs: ``<url-id>.<url_domain>``."""
    region: str = defaults.REGION
    """Region in ARNs and signatures."""
    default_namespace: str = defaults.NAMESPACE
    """Namespace used when a URL id or function name does not say one."""
    max_sync_payload: int = 6 * MB
    """Largest synchronous request payload (Lambda: 6 MB)."""
    max_async_payload: int = 256 * 1024
    """Largest asynchronous (Event) payload (Lambda: 256 KB)."""
    redis_url: str | None = None
    """Redis holding asynchronous invocations; without it Event invocations are refused."""
    async_concurrency: int = 16
    """Asynchronous events delivered at once by this gateway."""
    async_queue_limit: int = defaults.ASYNC_QUEUE_LIMIT
    """Asynchronous events one namespace may have waiting at once; more get 429."""
    async_retry_delay: float = defaults.ASYNC_RETRY_DELAY
    """Seconds before the first retry of an async event's function error (the second waits
    twice as long); Lambda's is about a minute."""
    async_key: bytes | None = None
    """What async events are sealed with (``async_queue.AsyncEvent.encode``): entries without
    its seal are never run. ``klambda up`` keeps one in its data dir; on Kubernetes it derives
    from the platform key."""
    async_consumer: str | None = None
    """Stable consumer name of this gateway's dispatcher (default: the host name, a pod's
    name on Kubernetes), so that a restarted one resumes the events it held at once."""
    shared_concurrency: bool = False
    """Concurrency limits kept in Redis with the other replicas (``shared_concurrency``):
    several gateways then enforce reserved concurrency and the regional limit together."""
    init_allowance: float = 10.0
    """Seconds added to a function's timeout for a cold start's init phase (Lambda: 10 s)."""
    concurrency_limit: int = defaults.CONCURRENCY_LIMIT
    """The regional limit: invocations in flight at once across all functions."""
    keep_warm: float = defaults.KEEP_WARM
    """Kubernetes: how long after its last use this gateway keeps reporting a version as used
    (the operator's own keep-warm decides when pods go; set both alike)."""
    shim_key: bytes | None = None
    """The platform key shims' caller tokens derive from (``api.shim_auth``): ``klambda up``
    makes one per run; on Kubernetes it is the Secret the operator keeps."""
    name: str = ""
    """Kubernetes: this replica's name in demand reports (default: host name and pid; in a pod,
    the pod's name)."""
    prune_interval: float = 2.0
    """Seconds between closing streams to shims that no route names (draining after a roll)."""
    activation_timeout: float = 30.0
    """Seconds to wait for the platform to start a version that has no running shim."""
    busy_wait: float = 10.0
    """Seconds a call keeps trying a version's pods while every one it tries is busy (on
    Kubernetes each pod has one environment, and busy pods make the Deployment grow, so new
    pods come meanwhile) before it is throttled; 0: throttle once each pod refused."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs of proxies in front of the gateway (an ingress) whose X-Forwarded-For is believed
    for ``aws:SourceIp`` and a URL event's ``sourceIp``; empty: the TCP peer, always."""
    shutdown_grace: float = defaults.SHUTDOWN_GRACE
    """On stop: seconds requests in flight get to finish before they are cut off."""
