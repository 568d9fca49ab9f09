"""params.yaml is validated against the JSON schema; bad keys and values are named in one line."""
import copy
import subprocess
import sys

import pytest
import yaml

from infbrush.config import load_params, validate_params
from infbrush.errors import InfbrushError


@pytest.fixture()
def params(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_shipped_params_validate(repo_root):
    params = load_params(repo_root / "params.yaml")
    for name in ("demo_brca", "demo_naip", "brca_4096", "brca_1024", "naip_1024", "celebahq_256"):
        assert name in params["datasets"]
    assert set(params["default_datasets"]) == {"demo_brca", "demo_naip"}


def test_schema_lists_the_library_samplers_and_spacings(repo_root):
    """The schema's sampler / spacing names are the registries' (one list each; a new sampler must be added to
    both)."""
    from infbrush.diffusion.samplers import SAMPLERS
    from infbrush.diffusion.schedule import SPACINGS

    schema = yaml.safe_load((repo_root / "workflow/schemas/params.schema.yaml").read_text())
    sample = next(node["properties"] for node in _walk(schema)
                  if isinstance(node, dict) and "sampler" in (node.get("properties") or {}))
    assert sample["sampler"]["enum"] == list(SAMPLERS)
    assert sample["spacing"]["enum"] == list(SPACINGS)


def test_schema_lists_the_library_recipe_switches(repo_root):
    """The training recipe's names in the schema are the library's registries (issue 27)."""
    from infbrush.diffusion.noise_levels import LOSS_WEIGHTINGS, T_DISTS
    from infbrush.train.schedules import EMA_KINDS

    schema = yaml.safe_load((repo_root / "workflow/schemas/params.schema.yaml").read_text())
    train = next(node["properties"] for node in _walk(schema)
                 if isinstance(node, dict) and "stratify_t" in (node.get("properties") or {}))
    assert train["t_dist"]["enum"] == list(T_DISTS)
    assert train["loss_weighting"]["enum"] == list(LOSS_WEIGHTINGS)
    assert train["ema_kind"]["enum"] == list(EMA_KINDS)


def test_schema_lists_the_papers_experiments(repo_root):
    """report.paper_row takes exactly the experiments the report has the paper's rows of."""
    from infbrush.evaluate.report import PAPER_EXPERIMENTS

    schema = yaml.safe_load((repo_root / "workflow/schemas/params.schema.yaml").read_text())
    assert schema["$defs"]["report"]["properties"]["paper_row"]["enum"] == list(PAPER_EXPERIMENTS)


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from _walk(child)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda p: p["datasets"]["demo_brca"]["train"].__setitem__("lr", -1.0), "datasets.demo_brca.train.lr = -1.0"),
        (lambda p: p["datasets"]["brca_4096"].setdefault("train", {}).__setitem__("betas", [0.9]),
         "datasets.brca_4096.train.betas"),
        # a shared value from defaults: is checked (and named) in every dataset it reaches
        (lambda p: p["defaults"]["train"].__setitem__("ema_rate", 2.0), "defaults.train.ema_rate (for datasets.naip_1024) = 2.0"),
        (lambda p: p["defaults"].__setitem__("trian", {}), "defaults: Additional properties are not allowed ('trian'"),
        (lambda p: p["datasets"]["demo_naip"].__setitem__("patchin", {}), "'patchin' was unexpected"),
        (lambda p: p["datasets"]["demo_brca"]["model"].__setitem__("cano", "yes"), "datasets.demo_brca.model.cano = 'yes'"),
        (lambda p: p["datasets"]["demo_brca"]["embedding"].__setitem__("kind", "vit"), "datasets.demo_brca.embedding.kind"),
        (lambda p: p["datasets"]["demo_brca"].pop("tiling"), "'tiling' is a required property"),
        (lambda p: p.__setitem__("default_datasets", ["demo_brca", "nope"]), "unknown dataset 'nope'"),
        (lambda p: p["datasets"]["demo_naip_fields"]["large_field"].__setitem__("tiles_from", "demo_nape"),
         "datasets.demo_naip_fields.large_field.tiles_from: unknown dataset 'demo_nape'"),
        (lambda p: p["defaults"]["sample"].__setitem__("sampler", "euler"), "defaults.sample.sampler"),
        (lambda p: p["defaults"]["sample"].__setitem__("guidance_interval", [300]), "defaults.sample.guidance_interval"),
        # an encoder trained here needs a trainer (open_clip, dino) and names the file it exports
        (lambda p: p["datasets"]["brca_1024"]["embedding"].__setitem__("train", True),
         "datasets.brca_1024.embedding.checkpoint = None"),
        (lambda p: p["resources"].__setitem__("trian", {"mem_mb": 1, "runtime": 1}), "resources: Additional properties"),
        (lambda p: p["resources"]["train"].__setitem__("runtime", [60]), "resources.train.runtime = [60]"),
    ],
)
def test_bad_params_are_rejected_with_the_key(params, edit, expected):
    bad = copy.deepcopy(params)
    edit(bad)
    with pytest.raises(InfbrushError) as info:
        validate_params(bad, source="params.yaml")
    message = str(info.value)
    assert expected in message
    assert message.startswith("params.yaml: ")
    assert "\n" not in message


def test_check_params_cli_exit_codes(repo_root, tmp_path, params):
    ok = subprocess.run([sys.executable, "-m", "infbrush", "check-params", str(repo_root / "params.yaml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = copy.deepcopy(params)
    bad["demo_world"]["seed"] = "zero"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(bad))
    res = subprocess.run([sys.executable, "-m", "infbrush", "check-params", str(path)], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "demo_world.seed = 'zero'" in res.stderr
    missing = subprocess.run([sys.executable, "-m", "infbrush", "check-params", str(tmp_path / "none.yaml")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "file not found" in missing.stderr
