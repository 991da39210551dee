"""Task and Function (cluster-scoped, ``stash.appscode.com/v1beta1``): the steps of a Job backup."""

from __future__ import annotations

from pydantic import Field

from api.base import Model, Resource
from api.common import Param, RawObject, VolumeMount
from api.constants import V1BETA1


class FunctionRef(Model):
    name: str | None = None
    params: list[Param] | None = None


class TaskSpec(Model):
    steps: list[FunctionRef] | None = None
    volumes: list[RawObject] | None = None


class Task(Resource):
    API_VERSION = V1BETA1
    KIND = "Task"

    spec: TaskSpec = Field(default_factory=TaskSpec)


class FunctionSpec(Model):
    """A container template; ``${VAR}`` / ``${VAR:=default}`` in it are substituted per session."""

    image: str
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    ports: list[RawObject] | None = None
    volume_mounts: list[VolumeMount] | None = None
    volume_devices: list[RawObject] | None = None
    runtime_settings: RawObject | None = None
    pod_security_policy_name: str | None = None


class Function(Resource):
    API_VERSION = V1BETA1
    KIND = "Function"

    spec: FunctionSpec
