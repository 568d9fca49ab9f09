"""envs/infbrush.yaml (conda env for cluster users) and pyproject.toml pin the same packages."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
ENV_FILE = REPO / "envs" / "infbrush.yaml"
PYPROJECT = REPO / "pyproject.toml"


def _pins(requirements: list[str], source: str) -> dict[str, str]:
    """{canonical name: exact version} from `name==version` lines; anything else is an error."""
    pins: dict[str, str] = {}
    for line in requirements:
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise AssertionError(f"{source}: {line!r} is not pinned with ==")
        name = canonicalize_name(req.name)
        assert name not in pins, f"{source}: {req.name} listed twice"
        pins[name] = specs[0].version
    return pins


def _pyproject() -> dict:
    if not PYPROJECT.exists():
        pytest.skip("pyproject.toml does not exist yet")
    return tomllib.loads(PYPROJECT.read_text())


def _conda_env() -> dict:
    env = yaml.safe_load(ENV_FILE.read_text())
    assert isinstance(env, dict) and env.get("name") == "infbrush", f"{ENV_FILE}: name must be infbrush"
    return env


def _conda_pip_lines(env: dict) -> list[str]:
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, f"{ENV_FILE}: expected exactly one pip: section"
    return [line for line in pip_sections[0] if not line.startswith("-")]  # skip `-e ..`


def test_conda_env_pins_exactly_the_pyproject_dependencies() -> None:
    project = _pyproject()["project"]
    expected = _pins(project["dependencies"], f"{PYPROJECT.name} [project].dependencies")
    actual = _pins(_conda_pip_lines(_conda_env()), f"{ENV_FILE.name} pip section")
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = {k: (expected[k], actual[k]) for k in set(expected) & set(actual) if expected[k] != actual[k]}
    assert not missing and not extra and not differ, (
        f"envs/infbrush.yaml vs pyproject.toml: missing {missing}, extra {extra}, "
        f"different pins (pyproject, env) {differ}"
    )


def test_pins_rejects_unpinned_and_duplicate_requirements() -> None:
    assert _pins(["Pillow==13.0.0", "open_clip_torch==3.3.0"], "x") == {
        "pillow": "13.0.0", "open-clip-torch": "3.3.0"}
    with pytest.raises(AssertionError, match="not pinned"):
        _pins(["torch>=2.0"], "x")
    with pytest.raises(AssertionError, match="listed twice"):
        _pins(["tqdm==1.0", "TQDM==1.0"], "x")


def test_conda_env_python_satisfies_requires_python() -> None:
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    conda = [d for d in _conda_env()["dependencies"] if isinstance(d, str)]
    pythons = [re.fullmatch(r"python\s*=+\s*([\d.]+)", d) for d in conda]
    versions = [m.group(1) for m in pythons if m]
    assert len(versions) == 1, f"{ENV_FILE}: pin python exactly once, e.g. python=3.11"
    assert requires.contains(versions[0] + ".0"), f"python={versions[0]} not in {requires}"
    assert "pip" in conda, f"{ENV_FILE}: the pip package is needed for the pip: section"


def test_installed_versions_match_the_pins() -> None:
    """The environment the tests run in is the pinned one (catches a pin nobody installed)."""
    if sys.version_info[:2] != (3, 11):
        pytest.skip("pins are for Python 3.11")
    pins = _pins(_pyproject()["project"]["dependencies"], PYPROJECT.name)
    wrong = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
            wrong[name] = (version, installed)
            continue
        if Version(installed).public != Version(version).public:  # torch may add +cu130
            wrong[name] = (version, installed)
    assert not wrong, f"pinned vs installed: {wrong}"
