"""An AppBinding read as Stash's addons read it: where the database listens, what it is, and
which Secret holds its credentials (never the credentials themselves)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.appbinding import AppBindingError, connection_variables, credentials_env
from api.objects import JSON


def binding(**spec: object) -> JSON:
    return {
        "apiVersion": "appcatalog.appscode.com/v1alpha1",
        "kind": "AppBinding",
        "metadata": {"name": "quick-postgres", "namespace": "demo"},
        "spec": spec,
    }


def test_a_kubedb_binding_by_service_names_host_port_type_version_and_secret() -> None:
    found = connection_variables(
        binding(
            type="kubedb.com/postgres",
            version="16.1",
            clientConfig={
                "service": {"name": "quick-postgres", "port": 5432, "scheme": "postgresql"}
            },
            secret={"name": "quick-postgres-auth"},
        )
    )
    assert found == {
        "TARGET_APP_HOST": "quick-postgres.demo.svc",
        "TARGET_APP_PORT": "5432",
        "TARGET_APP_SCHEME": "postgresql",
        "TARGET_APP_TYPE": "kubedb.com/postgres",
        "TARGET_APP_GROUP": "kubedb.com",
        "TARGET_APP_RESOURCE": "postgres",
        "TARGET_APP_VERSION": "16.1",
        "TARGET_APP_SECRET": "quick-postgres-auth",
        "TARGET_APP_USER": "$(TARGET_APP_USERNAME)",  # filled by the kubelet from the Secret
    }


def test_a_binding_by_url_gives_its_host_port_and_database() -> None:
    found = connection_variables(binding(clientConfig={"url": "postgresql://10.0.0.7:6432/shop"}))
    assert found["TARGET_APP_HOST"] == "10.0.0.7"
    assert found["TARGET_APP_PORT"] == "6432"
    assert found["TARGET_APP_PATH"] == "shop"
    # no Secret: no user from it, and what is unsaid is left for the Task's defaults
    assert "TARGET_APP_USER" not in found
    assert "TARGET_APP_VERSION" not in found


def test_a_binding_that_says_nowhere_is_an_error_naming_the_field() -> None:
    with pytest.raises(AppBindingError, match=r"spec.clientConfig names neither"):
        connection_variables(binding())
    with pytest.raises(AppBindingError, match=r"has no host"):
        connection_variables(binding(clientConfig={"url": "not a url"}))


def test_credentials_are_read_by_the_kubelet_from_optional_keys() -> None:
    assert credentials_env("auth") == [
        {
            "name": "TARGET_APP_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": "auth", "key": "username", "optional": True}},
        },
        {
            "name": "TARGET_APP_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "auth", "key": "password", "optional": True}},
        },
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.text(max_size=20) | st.integers(),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_any_client_config_gives_variables_or_an_error_never_a_crash(config: object) -> None:
    try:
        found = connection_variables(binding(clientConfig=config))
    except AppBindingError:
        return
    assert all(isinstance(v, str) and v for v in found.values())
