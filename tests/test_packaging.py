"""The wheel ships every package, the built-ins under their own name, and the entry points."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import attnkit

ROOT = Path(__file__).resolve().parent.parent
IGNORED = (
    ".venv",
    ".git",
    "build",
    "site",
    "node_modules",
    "*.egg-info",
    "__pycache__",
    "examples",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # Build from a clean copy: setuptools reuses a checkout's build/ folder, whose stale
    # files would hide a package missing from the configuration.
    source = tmp_path_factory.mktemp("source") / "attnkit"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*IGNORED))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("attnkit-*.whl")
    return zipfile.ZipFile(built)


def test_every_module_of_the_source_tree_is_in_the_wheel(wheel):
    names = set(wheel.namelist())
    modules = ["attnkit/__init__.py"] + [
        info.name.replace(".", "/") + ("/__init__.py" if info.ispkg else ".py")
        for info in pkgutil.walk_packages(attnkit.__path__, prefix="attnkit.")
    ]
    missing = [module for module in modules if module not in names]
    assert not missing, f"modules left out of the wheel: {missing}"


def test_the_builtins_ship_as_attnkit_builtins_not_plugins(wheel):
    names = set(wheel.namelist())
    for stage in ("simple", "self_attention", "causal", "multihead"):
        assert f"attnkit_builtins/{stage}.py" in names
    assert not any(name.startswith("plugins/") for name in names)
    assert {"attnkit/py.typed", "attnkit_builtins/py.typed"} <= names


def test_the_wheel_declares_the_entry_points_and_the_command(wheel):
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[attnkit]" in text
    for stage in ("simple", "self_attention", "causal", "multihead"):
        assert f"attnkit.{stage} = attnkit_builtins.{stage}" in text
    assert "attnkit = attnkit.cli:main" in text
