"""The JSON Patch diff turns the old document into the new one, whatever the two are."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.patch import diff

_keys = st.text(alphabet="ab/~-0", max_size=3)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2), st.text(max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(old=_json, new=_json)
def test_the_patch_turns_any_document_into_any_other(old: Any, new: Any) -> None:
    patched = jsonpatch.apply_patch(copy.deepcopy(old), diff(old, new))
    assert patched == new
    assert _types(patched) == _types(new)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def test_appending_to_a_list_is_an_add_at_its_end() -> None:
    old = {"spec": {"containers": [{"name": "app"}]}}
    new = {"spec": {"containers": [{"name": "app"}, {"name": "stash"}]}}
    assert diff(old, new) == [
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "stash"}}
    ]


def test_keys_are_escaped_as_json_pointers() -> None:
    assert diff({}, {"a/b~c": 1}) == [{"op": "add", "path": "/a~1b~0c", "value": 1}]


def test_json_types_are_kept_apart() -> None:
    assert diff({"x": 1}, {"x": True}) == [{"op": "replace", "path": "/x", "value": True}]


def test_shared_subtrees_are_not_walked() -> None:
    shared = {"big": list(range(1000))}
    assert diff({"a": shared, "b": 1}, {"a": shared, "b": 2}) == [
        {"op": "replace", "path": "/b", "value": 2}
    ]
