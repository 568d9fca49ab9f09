"""Load and validate params.yaml against workflow/schemas/params.schema.yaml.

Used by the Snakefile (before any job starts) and by ``infbrush check-params``. Library code never reads
params.yaml: values reach it as CLI flags and function arguments.

params.yaml may hold a ``defaults:`` block: settings shared by every dataset, merged under each dataset's own
block (the dataset's value wins; nested mappings merge key by key, lists and scalars are replaced). A defaults
block fills a dataset's block of the same name when the dataset has that block or the schema requires it, so
``defaults.tiling`` reaches only the datasets that tile. The merged parameters are what is validated and what
the rules read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infbrush.errors import InfbrushError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.yaml"


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


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` updated by ``override``: mappings merge key by key, anything else in ``override`` replaces."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def merge_defaults(params: Any, schema: dict) -> Any:
    """``params`` with ``defaults.<block>`` merged under every dataset's ``<block>`` (see the module docstring)."""
    if not isinstance(params, dict) or not isinstance(params.get("defaults"), dict):
        return params
    if not isinstance(params.get("datasets"), dict):
        return params
    required = set(schema["$defs"]["dataset"].get("required", []))
    datasets = {}
    for name, block in params["datasets"].items():
        if isinstance(block, dict):
            block = dict(block)
            for key, shared in params["defaults"].items():
                if key in block or key in required:
                    own = block.get(key)
                    if own is None:
                        block[key] = shared
                    elif isinstance(shared, dict) and isinstance(own, dict):
                        block[key] = deep_merge(shared, own)
        datasets[name] = block
    return {**params, "datasets": datasets}


def _origin(raw: Any, path: list) -> str:
    """The key path as written: datasets.<ds>.<block>.<key>, or defaults.<block>.<key> (for datasets.<ds>) when the
    value came from the defaults block."""
    if len(path) < 3 or path[0] != "datasets" or not isinstance(raw, dict):
        return _key_path(path)

    def has(node, keys):
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    if not has(raw.get("datasets"), path[1:]) and has(raw.get("defaults"), path[2:]):
        return f"{_key_path(['defaults', *path[2:]])} (for {_key_path(path[:2])})"
    return _key_path(path)


def validate_params(params: Any, source: str = "params.yaml", schema_path: str | os.PathLike | None = None) -> dict:
    """Check ``params`` (its ``defaults:`` merged into every dataset) against the JSON schema and return the merged
    parameters; raise InfbrushError naming the key, value and expectation."""
    import jsonschema

    schema = load_yaml(schema_path or SCHEMA_PATH)
    raw, params = params, merge_defaults(params, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(params))
    if errors:
        # An unknown key (often a typo) explains a "required" error beside it, so report it first.
        unknown = [e for e in errors if e.validator == "additionalProperties"]
        err = jsonschema.exceptions.best_match(unknown or errors)
        where = _origin(raw, list(err.absolute_path))
        if err.validator in ("additionalProperties", "required"):
            raise InfbrushError(f"{source}: {where}: {err.message}")
        value = repr(err.instance)
        value = value if len(value) <= 80 else value[:77] + "..."
        raise InfbrushError(f"{source}: {where} = {value}: {err.message}")
    references = [("default_datasets", name) for name in params["default_datasets"]]
    references += [(f"datasets.{ds}.large_field.tiles_from", d["large_field"]["tiles_from"])
                   for ds, d in params["datasets"].items() if d.get("large_field")]
    for where, name in references:  # keys that name another dataset
        if name not in params["datasets"]:
            raise InfbrushError(f"{source}: {where}: unknown dataset {name!r}; valid: {', '.join(params['datasets'])}")
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
