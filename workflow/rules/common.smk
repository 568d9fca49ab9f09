# Shared by all rules: params validation (with params.yaml's `defaults:` merged into every dataset) and the one
# config lookup, P (workflow/rules/rule_params.py): P.get(ds, "train.steps"), P.flags_of({...}), P.targets(ds).
import json
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "rules"))
from infbrush.config import validate_params
from rule_params import Params, RESULTS, flag

# One-line error naming the key before any job starts; the merged parameters are what every rule reads.
config.update(validate_params(config, source="params.yaml"))
P = Params(config)


wildcard_constraints:
    ds="|".join(config["datasets"]),
    res=r"\d+",
    variant="label|ablation_cano",

# Every rule runs `infbrush`: with --use-conda, in the project's environment (the pins of pyproject.toml).
CONDA_ENV = "../../envs/infbrush.yaml"
