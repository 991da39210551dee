"""Every test runs the project's pinned restic (``devcluster.build.RESTIC_VERSION``, the one
the image copies), never whatever version a distribution put on PATH."""

from __future__ import annotations

import pytest

from devcluster.build import use_pinned_restic


def pytest_configure(config: pytest.Config) -> None:
    use_pinned_restic(progress=lambda msg: print(msg, flush=True))
