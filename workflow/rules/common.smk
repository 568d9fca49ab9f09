# Shared by all rules: params validation (with params.yaml's `defaults:` merged into every dataset), the one
# config lookup, P (workflow/rules/rule_params.py: P.get(ds, "train.steps"), P.flags_of("train.lr", ...),
# P.resources("train")), the results layout L (infbrush/layout.py) and the stage helpers (workflow/rules/helpers/).
import json
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "rules"))
from infbrush import layout as L
from infbrush.config import validate_params
from rule_params import Params, flag
from helpers.evaluate import clip_checkpoint, default_targets, report_inputs, synthetic_res, tile_size
from helpers.models import control_goals, inputs, of_variant, sample_cond, sample_flags, train_cond, variant

# One-line error naming the key before any job starts; the merged parameters are what every rule reads.
# (Snakemake's own `validate` checks the same schema but neither merges `defaults:` nor names the key in one line.)
config.update(validate_params(config, source="params.yaml"))
P = Params(config)


wildcard_constraints:
    ds="|".join(config["datasets"]),
    res=r"\d+",
    variant="label|ablation_cano",

# Every rule runs `infbrush`: with --use-conda, in the project's environment (the pins of pyproject.toml).
CONDA_ENV = "../../envs/infbrush.yaml"
