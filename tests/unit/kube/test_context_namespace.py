"""The namespace a kubectl command acts in when ``-n`` is not given: the context's."""

from __future__ import annotations

from pathlib import Path

import yaml

from kube.client import context_namespace


def _kubeconfig(path: Path) -> str:
    cluster = {"name": "local", "cluster": {"server": "https://127.0.0.1:6443"}}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "me", "user": {"token": "t"}}],
                "contexts": [
                    {
                        "name": "work",
                        "context": {"cluster": "local", "user": "me", "namespace": "demo"},
                    },
                    {"name": "bare", "context": {"cluster": "local", "user": "me"}},
                ],
                "current-context": "work",
            }
        )
    )
    return str(path)


def test_the_current_context_gives_the_namespace(tmp_path: Path) -> None:
    assert context_namespace(_kubeconfig(tmp_path / "config")) == "demo"


def test_a_context_without_a_namespace_means_default(tmp_path: Path) -> None:
    assert context_namespace(_kubeconfig(tmp_path / "config"), "bare") == "default"


def test_no_kubeconfig_outside_a_pod_means_default(tmp_path: Path) -> None:
    assert context_namespace(str(tmp_path / "absent")) == "default"
