"""AppBinding (``appcatalog.appscode.com/v1alpha1``), the way Stash's database addons find a
database: where it listens (a Service or a URL), which Secret holds its credentials, what it is
(``kubedb.com/postgres``) and its version. A Job-model member whose target is an AppBinding
gets these as the ``TARGET_APP_*`` variables of its Functions; the credentials themselves never
pass through the operator: the Job's containers read them from the Secret as the environment
variables ``TARGET_APP_USERNAME`` and ``TARGET_APP_PASSWORD`` (keys ``username`` and
``password``, as KubeDB writes them).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from api.objects import JSON
from api.views import Obj, part, text

APPBINDING_KIND: Final = "AppBinding"
USERNAME_ENV: Final = "TARGET_APP_USERNAME"
PASSWORD_ENV: Final = "TARGET_APP_PASSWORD"  # noqa: S105 - the variable's name
# The credentials Secret's keys (KubeDB's), read by the kubelet into the variables above
SECRET_KEYS: Final = {USERNAME_ENV: "username", PASSWORD_ENV: "password"}


class AppBindingError(ValueError):
    """An AppBinding that does not say where its database is."""


def connection_variables(binding: JSON) -> dict[str, str]:
    """``TARGET_APP_HOST``, ``_PORT``, ``_SCHEME``, ``_PATH``, ``_TYPE``, ``_GROUP``,
    ``_RESOURCE``, ``_VERSION`` and ``_SECRET`` of an AppBinding (left out when it does not
    say, so a Task's ``${TARGET_APP_PORT:=5432}`` default applies);
    ``TARGET_APP_USER`` is ``$(TARGET_APP_USERNAME)``, which the kubelet fills from the Secret
    when a container starts (in ``args``, never through the operator)."""
    view = Obj(binding)
    spec = view.spec.raw
    config = part(spec, "clientConfig")
    service = part(config, "service")
    url = text(config, "url")
    if service:
        name = text(service, "name")
        if not name:
            raise AppBindingError(
                f"AppBinding {view.name}: spec.clientConfig.service.name is empty"
            )
        host = f"{name}.{view.namespace}.svc"
        port = str(service.get("port") or "")
        scheme, path = text(service, "scheme"), text(service, "path")
    elif url:
        parts = urlsplit(url)
        if not parts.hostname:
            raise AppBindingError(
                f"AppBinding {view.name}: spec.clientConfig.url {url!r} has no host"
            )
        host, scheme, path = parts.hostname, parts.scheme, parts.path
        port = str(parts.port or "")
    else:
        raise AppBindingError(
            f"AppBinding {view.name}: spec.clientConfig names neither a service nor a url"
        )
    secret = credentials_secret(binding) or ""
    found = {
        "TARGET_APP_HOST": host,
        "TARGET_APP_PORT": port,
        "TARGET_APP_SCHEME": scheme,
        "TARGET_APP_PATH": path.lstrip("/"),
        **app_identity(binding),
        "TARGET_APP_SECRET": secret,
        "TARGET_APP_USER": f"$({USERNAME_ENV})" if secret else "",
    }
    return {name: value for name, value in found.items() if value}


def app_identity(binding: JSON) -> dict[str, str]:
    """What the database is: ``TARGET_APP_TYPE`` (``kubedb.com/postgres``), its ``_GROUP`` and
    ``_RESOURCE``, and ``TARGET_APP_VERSION`` (empty when the binding does not say)."""
    spec = Obj(binding).spec.raw
    app_type = text(spec, "type")
    group, _, resource = app_type.partition("/")
    return {
        "TARGET_APP_TYPE": app_type,
        "TARGET_APP_GROUP": group,
        "TARGET_APP_RESOURCE": resource,
        "TARGET_APP_VERSION": text(spec, "version"),
    }


def credentials_secret(binding: JSON) -> str | None:
    """The name of the Secret with the database's credentials (in the binding's namespace)."""
    return text(part(Obj(binding).spec.raw, "secret"), "name") or None


def credentials_env(secret: str) -> list[JSON]:
    """The container environment that reads the credentials from ``secret`` (optional keys:
    a database without a user name or password still gets a Job)."""
    return [
        {
            "name": env,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}},
        }
        for env, key in SECRET_KEYS.items()
    ]
