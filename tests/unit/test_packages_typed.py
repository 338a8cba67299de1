"""Every package ships its `py.typed` marker (PEP 561), the SDK's above all: left out of the
package data, an installed `clients` was "missing library stubs" to a service's `mypy --strict`."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_each_package_with_a_marker_ships_it() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {include.rstrip("*") for include in config["packages"]["find"]["include"]}
    marked = {path.parent.name for path in ROOT.glob("*/py.typed")}
    assert marked == packages
    assert all("py.typed" in config["package-data"].get(name, []) for name in packages)
