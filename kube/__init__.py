"""The only code that talks to the Kubernetes API server: a small JSON client, its errors.

Everything above this package speaks plain dicts and ``api`` models through ``kube.Client``.
"""

from kube.client import Client, ResourceType
from kube.config import ConfigError
from kube.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "BadRequest",
    "Client",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeError",
    "NotFound",
    "ResourceType",
    "Unavailable",
]
