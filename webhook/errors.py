"""The webhook's errors; ``webhook.app`` maps them to HTTP, in one place."""

from __future__ import annotations


class WebhookError(Exception):
    """Base of every error the webhook reports to a client."""

    status_code = 400


class BadReview(WebhookError):
    """The body is not an AdmissionReview we can answer (400)."""


class BodyTooLarge(WebhookError):
    """The body exceeds the cap (413)."""

    status_code = 413


class BodyTimeout(WebhookError):
    """The client did not send its whole body in time (408)."""

    status_code = 408
