"""AdmissionReview (admission.k8s.io/v1 and v1beta1): the request we read, the response we send.

The admitted object stays a raw dict: it is copied, mutated and diffed, never re-typed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

ADMISSION_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


@dataclass(frozen=True)
class AdmissionRequest:
    api_version: str
    uid: str
    kind: str  # the admitted object's kind, e.g. "Pod"
    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    namespace: str
    name: str
    object: dict[str, Any] | None
    dry_run: bool = False


@dataclass(frozen=True)
class AdmissionResponse:
    uid: str
    allowed: bool = True
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    message: str = ""
    code: int = 0

    def to_review(self, api_version: str) -> dict[str, Any]:
        """The AdmissionReview to send back, in the version the request came in."""
        response: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if self.patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(orjson.dumps(self.patch)).decode()
        if self.warnings:
            response["warnings"] = list(self.warnings)
        if self.message or self.code:
            response["status"] = {"message": self.message, "code": self.code or 200}
        return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}
