"""Load and validate params.yaml against workflow/schemas/params.schema.yaml.

Used by the Snakefile (before any job starts) and by ``infbrush check-params``. Library code never reads
params.yaml: values reach it as CLI flags and function arguments.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infbrush.errors import InfbrushError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.yaml"
DEMO_SOURCES = ("demo_brca", "demo_naip")


def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def load_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing or malformed file is an InfbrushError naming it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InfbrushError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InfbrushError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def validate_params(params: Any, source: str = "params.yaml", schema_path: str | os.PathLike | None = None) -> dict:
    """Check ``params`` against the JSON schema; raise InfbrushError naming the key, value and expectation."""
    import jsonschema

    schema = load_yaml(schema_path or SCHEMA_PATH)
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(params))
    if errors:
        # An unknown key (often a typo) explains a "required" error beside it, so report it first.
        unknown = [e for e in errors if e.validator == "additionalProperties"]
        err = jsonschema.exceptions.best_match(unknown or errors)
        if err.validator in ("additionalProperties", "required"):
            raise InfbrushError(f"{source}: {_key_path(err.absolute_path)}: {err.message}")
        value = repr(err.instance)
        value = value if len(value) <= 80 else value[:77] + "..."
        raise InfbrushError(f"{source}: {_key_path(err.absolute_path)} = {value}: {err.message}")
    for name in params["default_datasets"]:
        if name not in params["datasets"]:
            raise InfbrushError(f"{source}: default_datasets: unknown dataset {name!r}; "
                                f"valid: {', '.join(params['datasets'])}")
    return params


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    """Read and validate a params file."""
    return validate_params(load_yaml(path), source=str(path))


def dataset_params(params: dict, name: str) -> dict:
    """The block of dataset ``name``; an unknown name lists the valid ones."""
    datasets = params["datasets"]
    if name not in datasets:
        raise InfbrushError(f"unknown dataset {name!r}; valid: {', '.join(datasets)}")
    return datasets[name]
