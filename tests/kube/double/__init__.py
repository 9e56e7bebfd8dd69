"""A Kubernetes API server double for tests (see /work/shared/reference/kube-api-double.md).

Public face: :class:`KubeApiDouble` (asyncio), :class:`ThreadedKubeApiDouble` (background
thread, for synchronous tests), :class:`Settings`, :class:`ApiError`, :class:`Fault`. The
modules behind them are private: ``server`` (HTTP), ``reads``/``writes``/``deletes``/``watch``
(operations), ``store`` (resourceVersions, history), ``schema``/``cel``/``custom``/``crd``
(custom resources), ``strategic``/``patch``/``apply`` (patches), ``controllers`` (GC,
namespaces, CRD establishing), ``discovery``/``openapi``/``table`` (what kubectl reads).
"""

from .double import ADMIN_TOKEN, KubeApiDouble
from .errors import ApiError
from .faults import Fault, RequestRecord
from .settings import Settings
from .threaded import ThreadedKubeApiDouble

__all__ = [
    "ADMIN_TOKEN",
    "ApiError",
    "Fault",
    "KubeApiDouble",
    "RequestRecord",
    "Settings",
    "ThreadedKubeApiDouble",
]
