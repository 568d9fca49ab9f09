"""Every params.yaml setting reaches a command, and every setting the rules read is defined (issue 14).

The rules read params only through workflow/rules/rule_params.py (``P.get(ds, "train.steps")``,
``P.top("demo_world.seed")`` and flag tables keyed by the same dotted paths), so the paths they read are string
literals of the rule files. A schema key that no rule names is a setting that does nothing; a dotted path that
the schema does not define is a read of a key that params.yaml cannot set.
"""
import re
import subprocess
import sys

import pytest
import yaml

from infbrush.config import load_params

# Top-level blocks whose rules do not yet read them through P (their own rule file; see the README's layout):
# the check skips them rather than fail on another stage's reads.
NOT_THROUGH_P: set[str] = set()
LITERAL = re.compile(r"""["']([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)["']""")


def _resolve(schema, node):
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node


def _leaves(schema, node, prefix):
    """Dotted key paths down to the leaves; a free-form mapping (prompts, overrides, download) is a leaf."""
    node = _resolve(schema, node)
    props = node.get("properties")
    if not props:
        return {prefix}
    paths = set()
    for key, sub in props.items():
        paths |= _leaves(schema, sub, f"{prefix}.{key}" if prefix else key)
    return paths


@pytest.fixture(scope="module")
def schema(repo_root):
    return yaml.safe_load((repo_root / "workflow" / "schemas" / "params.schema.yaml").read_text())


@pytest.fixture(scope="module")
def rule_literals(repo_root):
    files = [repo_root / "Snakefile", repo_root / "workflow" / "rules" / "rule_params.py",
             *sorted((repo_root / "workflow" / "rules").glob("*.smk"))]
    return {m.group(1) for path in files for m in LITERAL.finditer(path.read_text())}


def _schema_paths(schema):
    """(dataset-level leaf paths, top-level leaf paths), the blocks read through P only."""
    dataset = _leaves(schema, schema["$defs"]["dataset"], "")
    top = set()
    for key, sub in schema["properties"].items():
        if key in ("datasets", "defaults") or key in NOT_THROUGH_P:
            continue
        top |= _leaves(schema, sub, key)
    return dataset, top


def test_every_schema_key_is_read_by_a_rule(schema, rule_literals):
    dataset, top = _schema_paths(schema)
    unread = sorted(p for p in dataset | top if p not in rule_literals)
    assert not unread, f"params keys no rule reads (settings that do nothing): {', '.join(unread)}"


def test_every_key_a_rule_reads_is_in_the_schema(schema, rule_literals):
    dataset, top = _schema_paths(schema)
    blocks = {p.split(".")[0] for p in dataset if "." in p} | {p.split(".")[0] for p in top}
    inner = {".".join(p.split(".")[:i]) for p in dataset | top for i in range(1, p.count(".") + 1)}
    read = {lit for lit in rule_literals if "." in lit and lit.split(".")[0] in blocks}
    undefined = sorted(read - dataset - top - inner)
    assert not undefined, f"rules read keys params.yaml cannot set: {', '.join(undefined)}"


def test_rules_look_up_config_one_way(repo_root):
    """No rule indexes the config itself: DATASETS[...], config["datasets"][...] and .get(key, default) fallbacks
    are what P replaces."""
    for path in sorted((repo_root / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        if path.name == "brush.smk":  # issue 16's rule file reads its own top-level block (NOT_THROUGH_P)
            continue
        for pattern in (r"DATASETS\[", r"config\[\"datasets\"\]\[", r"\.get\(\"[a-z_]+\", [^)]"):
            assert not re.search(pattern, text), f"{path.name}: reads config around P ({pattern})"


def test_the_check_catches_an_unread_key(schema, rule_literals):
    """The first check fails for a key nobody reads (a schema with one extra key)."""
    extra = yaml.safe_load(yaml.safe_dump(schema))
    extra["$defs"]["train"]["properties"]["nobody_reads_this"] = {"type": "integer"}
    dataset, _ = _schema_paths(extra)
    assert "train.nobody_reads_this" in dataset - rule_literals


def test_defaults_are_merged_into_every_dataset(repo_root):
    params = load_params(repo_root / "params.yaml")
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    for name, block in params["datasets"].items():
        for key, value in raw["defaults"]["train"].items():
            own = (raw["datasets"][name].get("train") or {})
            assert block["train"][key] == own.get(key, value), f"{name}.train.{key}"
    # a block a dataset lacks is not added (defaults.tiling reaches only the WSI datasets)
    assert "tiling" not in params["datasets"]["demo_naip"]
    assert params["datasets"]["brca_1024"]["tiling"]["median_blur"] == raw["defaults"]["tiling"]["median_blur"]


def test_snakemake_lint_is_clean(repo_root):
    """`snakemake --lint` names no rule file of the pipeline."""
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=repo_root, capture_output=True,
                         text=True, timeout=300)
    out = res.stdout + res.stderr
    linted = set(re.findall(r"Lints for (?:snakefile|rule \w+ \(line \d+,) (\S+?)\)?:", out))
    assert not linted, f"snakemake --lint complains about: {', '.join(sorted(linted))}\n{out[-3000:]}"
