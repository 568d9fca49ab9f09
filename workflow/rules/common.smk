# Shared helpers for all rules: config validation, dataset lookup, default targets.
import os
from infbrush.config import validate_params, DEMO_SOURCES

validate_params(config, source="params.yaml")  # one-line error naming the key before any job starts

DATASETS = config["datasets"]
RESULTS = "results"


wildcard_constraints:
    ds="|".join(DATASETS),


def ds_cfg(wildcards):
    """The params.yaml block of the dataset named by the {ds} wildcard."""
    return DATASETS[wildcards.ds]


def param(ds, path, default=None):
    """datasets.<ds>.<path>, or ``default`` where a key on the way is absent or null (optional keys)."""
    node = DATASETS[ds]
    for key in path.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            return default
        node = node[key]
    return node


def cfg(path):
    """A params function for rules: cfg('train.lr') -> the value under datasets.<ds>.train.lr."""

    def lookup(wildcards):
        node = DATASETS[wildcards.ds]
        for key in path.split("."):
            node = node[key]
        return node

    return lookup


# Each stage file appends the targets that make up a dataset's finished chain so far.
DATASET_TARGETS = []  # functions ds -> list of paths


def default_targets():
    return [path for ds in config["default_datasets"] for fn in DATASET_TARGETS for path in fn(ds)]
