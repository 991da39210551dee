"""Calling the admission endpoint as the ASGI server would, without a server: the body in one
message, the status and the JSON answer back."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from api.constants import WEBHOOK_PATH
from webhook.app import AdmissionEndpoint


async def post(endpoint: AdmissionEndpoint, body: bytes) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": "POST", "path": WEBHOOK_PATH, "headers": []}
    await endpoint(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])
