"""Malformed and hostile AdmissionReviews get a message that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.factories import pod, review
from webhook.errors import BadReview
from webhook.review import parse_review


def _body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_a_well_formed_review_is_parsed() -> None:
    doc = review(pod())
    request = parse_review(_body(doc))
    assert request.uid == doc["request"]["uid"]
    assert (request.kind, request.operation, request.namespace) == ("Pod", "CREATE", "demo")
    assert request.api_version == "admission.k8s.io/v1"


def test_a_v1beta1_review_is_accepted() -> None:
    doc = review(pod())
    doc["apiVersion"] = "admission.k8s.io/v1beta1"
    assert parse_review(_body(doc)).api_version == "admission.k8s.io/v1beta1"


def _broken(change: str) -> Any:
    doc: Any = review(pod())
    if change == "no-uid":
        del doc["request"]["uid"]
    elif change == "uid-int":
        doc["request"]["uid"] = 42
    elif change == "no-request":
        del doc["request"]
    elif change == "request-list":
        doc["request"] = [1, 2]
    elif change == "object-string":
        doc["request"]["object"] = "pod"
    elif change == "wrong-kind":
        doc["kind"] = "ConversionReview"
    elif change == "wrong-version":
        doc["apiVersion"] = "v1"
    elif change == "top-list":
        doc = [doc]
    elif change == "operation-missing":
        del doc["request"]["operation"]
    elif change == "namespace-int":
        doc["request"]["namespace"] = 7
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no-uid", "request.uid must be a non-empty string"),
        ("uid-int", "request.uid must be a non-empty string"),
        ("no-request", "request must be an object"),
        ("request-list", "request must be an object"),
        ("object-string", "request.object must be an object"),
        ("wrong-kind", "kind must be AdmissionReview, got 'ConversionReview'"),
        ("wrong-version", "apiVersion must be one of"),
        ("top-list", "the AdmissionReview must be an object"),
        ("operation-missing", "request.operation must be a string"),
        ("namespace-int", "request.namespace and request.name must be strings"),
    ],
)
def test_a_malformed_review_is_rejected_with_a_message(change: str, message: str) -> None:
    with pytest.raises(BadReview, match=message):
        parse_review(_body(_broken(change)))


@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe\x00", b"{", b'"just a string"'])
def test_a_body_that_is_not_a_json_object_is_rejected(body: bytes) -> None:
    with pytest.raises(BadReview):
        parse_review(body)
