"""Every params.yaml setting reaches a command, and every setting the rules read is defined.

The rules read params only through workflow/rules/rule_params.py (``P.get(ds, "train.steps")``,
``P.top("demo_world.seed")``, ``P.of("inputs.slides")`` and ``P.flags_of("train.lr", ...)``, flags named after
the same dotted paths) and the stage helpers beside it, so the paths they read are string literals of those
files. A schema key that no rule names is a setting that does nothing; a dotted path that the schema does not
define is a read of a key that params.yaml cannot set. The ``resources:`` block is keyed by rule kind instead:
each kind the schema defines is requested by a rule (``P.resources("train")``) and each requested kind is defined.
"""
import re
import subprocess
import sys

import pytest
import yaml

from infbrush.config import load_params

# Top-level blocks not read by key path: resources (by rule kind: test_every_resource_kind_is_requested).
NOT_THROUGH_P: set[str] = {"resources"}
LITERAL = re.compile(r"""["']([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)["']""")
RESOURCES = re.compile(r"""P\.resources\(["']([a-z_]+)["']\)""")
FLAG_MAPPING = re.compile(r"""\{["']((?:[a-z_]+\.)*([a-z_]+))["']: ["'](--[a-z-]+)["']\}""")


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


def _rule_files(repo_root):
    rules = repo_root / "workflow" / "rules"
    return [repo_root / "Snakefile", *sorted(rules.glob("*.smk")), *sorted(rules.rglob("*.py"))]


@pytest.fixture(scope="module")
def rule_literals(repo_root):
    return {m.group(1) for path in _rule_files(repo_root) for m in LITERAL.finditer(path.read_text())}


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
        for pattern in (r"DATASETS\[", r"config\[\"datasets\"\]\[", r"\.get\(\"[a-z_]+\", [^)]"):
            assert not re.search(pattern, text), f"{path.name}: reads config around P ({pattern})"


def test_the_check_catches_an_unread_key(schema, rule_literals):
    """The first check fails for a key nobody reads (a schema with one extra key)."""
    extra = yaml.safe_load(yaml.safe_dump(schema))
    extra["$defs"]["train"]["properties"]["nobody_reads_this"] = {"type": "integer"}
    dataset, _ = _schema_paths(extra)
    assert "train.nobody_reads_this" in dataset - rule_literals


def test_every_resource_kind_is_requested(schema, repo_root):
    """resources.<kind> of the schema is what the rules request, kind for kind (no dead or unknown entry), and
    params.yaml sizes every kind."""
    requested = {m.group(1) for path in _rule_files(repo_root) for m in RESOURCES.finditer(path.read_text())}
    defined = set(schema["properties"]["resources"]["properties"])
    assert requested == defined, (sorted(defined - requested), sorted(requested - defined))
    assert set(load_params(repo_root / "params.yaml")["resources"]) == defined


def test_flags_are_named_after_their_keys_where_they_can_be(repo_root):
    """A flag written out beside its key ({"embedding.input_size": "--thumb-size"}) names a flag that the key's own
    name does not give (else the key alone derives it: key x_y → --x-y)."""
    for path in _rule_files(repo_root):
        for m in FLAG_MAPPING.finditer(path.read_text()):
            assert m.group(3) != "--" + m.group(2).replace("_", "-"), f"{path.name}: {m.group(0)} is derived"


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
