"""What ships: the product's wheel and image hold the product's packages and not the development
harness (``dev/``: the dev cluster and the demo), which reaches ``stash`` only where it is
installed, through the ``stash.commands`` entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from cli.main import build_parser
from devcluster.images import CONTEXT_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
SHIPPED = [package for package in PACKAGES if "." not in package]  # the top-level ones


def _modules(root: Path, packages: list[str]) -> set[str]:
    """Every module file of ``packages`` under ``root``, as a path relative to it."""
    return {
        str(path.relative_to(root))
        for package in packages
        for path in (root / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }


def test_every_package_of_the_product_is_listed_subpackages_too() -> None:
    found = {
        str(init.parent.relative_to(ROOT)).replace("/", ".")
        for package in SHIPPED
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert found == set(PACKAGES)


def test_the_wheel_built_as_the_image_builds_it_holds_the_product_and_no_dev_cluster_code(
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"  # what the Dockerfile copies, and nothing else
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not words[1].startswith("--from"):
            *sources, target = words[1:]
            for source in sources:
                dest = context / (source if target.endswith("/") else target)
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, dest, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, dest)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(context)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheels").glob("stash_py-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    metadata = {top for top in tops if top.endswith(".dist-info")}
    assert tops - metadata == set(SHIPPED)
    assert "devcluster" not in SHIPPED
    # Every module of the product, subpackages' too: the pods run only what the wheel holds.
    assert {name for name in names if name.endswith(".py")} == _modules(ROOT, SHIPPED)


def test_the_image_is_built_from_the_shipped_packages_alone() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert "devcluster" not in copied
    assert not any(path.startswith("dev") for path in copied)
    assert set(CONTEXT_PACKAGES) == set(SHIPPED)


def test_the_dev_harness_adds_its_commands_to_stash_where_it_is_installed() -> None:
    demo = build_parser(["demo"]).parse_args(["demo", "--keep"])
    assert demo.keep is True
    cluster = build_parser(["dev-cluster"]).parse_args(["dev-cluster", "status"])
    assert cluster.action == "status"


def test_a_product_command_reads_no_plugin_metadata() -> None:
    script = (
        "import sys\n"
        "from cli.main import build_parser\n"
        "build_parser(['run-backup']).parse_args("
        "['run-backup', '--target-kind', 'Deployment', '--target-name', 'web'])\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"
