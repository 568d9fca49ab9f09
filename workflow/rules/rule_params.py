"""How the Snakemake rules read params.yaml (imported by workflow/rules/common.smk): lookups, flags, resources.

``P.get(ds, "train.steps")`` is ``datasets.<ds>.train.steps``, ``P.top("brush.size")`` a top-level key (None where
unset; Snakemake's ``lookup``), ``P.of("inputs.slides")`` the first as a function of a rule's {ds}. Flags are
named after their keys, ``train.ema_rate`` → ``--ema-rate`` (``prefix`` drops a command's name from a key of the
shared evaluate block: ``evaluate.fid_seed`` → ``--seed``); a setting that a command takes under another name is
a mapping, ``{"embedding.input_size": "--thumb-size"}``. Only the keys params.yaml sets become flags, so each
command's own defaults (its library config dataclass) supply the rest. Paths come from infbrush.layout; what to
build, and how large a job is, from params, never from a dataset's name. tests/test_params_usage.py checks that
every key path named here, in helpers/ or in a rule is a schema key and that every schema key is read.
"""
from __future__ import annotations

import glob
import re
import shlex

from snakemake.ioutils import lookup


def flag(name: str, value) -> str:
    """One command-line flag: True → the bare flag, False/None/empty → nothing, lists space-joined, mappings as
    NAME=VALUE items (class prompts), each shell-quoted."""
    if value is None or value is False or value == [] or value == {}:
        return ""
    if value is True:
        return name
    if isinstance(value, dict):
        return f"{name} " + " ".join(shlex.quote(f"{k}={v}") for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return f"{name} " + " ".join(shlex.quote(str(v)) for v in value)
    return f"{name} {shlex.quote(str(value))}"


class Params:
    """The validated params (``defaults:`` merged into every dataset) as the rules see them."""

    def __init__(self, config: dict):
        self.config, self.datasets = config, config["datasets"]

    # ------------------------------------------------------------------ lookup
    def get(self, ds: str, path: str):
        """datasets.<ds>.<path>, or None where a key on the way is absent or null (optional keys)."""
        return lookup(dpath=path.replace(".", "/"), within=self.datasets[ds], default=None)

    def top(self, path: str):
        """A top-level key path such as demo_world.seed, or None."""
        return lookup(dpath=path.replace(".", "/"), within=self.config, default=None)

    def of(self, path: str):
        """A Snakemake input/params function: datasets.<ds>.<path> of the rule's {ds} ('' where absent)."""
        return lookup(dpath="{ds}/" + path.replace(".", "/"), within=self.datasets, default="")

    def flags(self, ds: str | None, *keys, prefix: str = "", values: dict | None = None) -> str:
        """The flags of the keys that are set, for dataset ``ds`` (top-level keys where ``ds`` is None): a key path
        gives ``--<last name>`` ('_' → '-', ``prefix`` dropped), a mapping {key path: flag} its own flag;
        ``values`` replaces a key's params value (a model's own setting, e.g. its guidance scale)."""
        values = values or {}
        pairs = [pair for key in keys for pair in (key.items() if isinstance(key, dict) else [(key, None)])]
        out = (flag(name or "--" + path.rsplit(".", 1)[-1].removeprefix(prefix).replace("_", "-"),
                    values[path] if path in values else self.get(ds, path) if ds else self.top(path))
               for path, name in pairs)
        return " ".join(f for f in out if f)

    def flags_of(self, *keys, prefix: str = ""):
        """A Snakemake params function: the flags of ``keys`` for the rule's {ds}."""
        return lambda wildcards: self.flags(wildcards.ds, *keys, prefix=prefix)

    # ------------------------------------------------------------------ what a dataset is
    def names(self, predicate) -> str:
        """Regex of the datasets for which predicate(ds) holds (a wildcard constraint; matches nothing if none)."""
        return "|".join(re.escape(ds) for ds in self.datasets if predicate(ds)) or "(?!)"

    def with_source(self, source: str) -> str:
        """The datasets whose store comes from ``source`` (wsi, geotiff, celebahq): its rules' constraint."""
        return self.names(lambda ds: self.get(ds, "source") == source)

    def gpus(self, ds: str) -> int:
        return int(self.get(ds, "train.gpus") or 0)

    def device(self, ds: str) -> str:
        return "auto" if self.gpus(ds) else "cpu"

    def launcher(self, ds: str, processes: str = "train.gpus") -> str:
        """`infbrush`, or torchrun on one node over the processes a key asks for (train.gpus: DDP training;
        sample.processes: each image sampled by all of them together)."""
        n = int(self.get(ds, processes) or 1)
        return f"torchrun --standalone --nproc_per_node {n} -m infbrush" if n > 1 else "infbrush"

    def trains(self, ds: str, kind: str) -> bool:
        """Whether the pipeline trains the dataset's encoder of this kind (embedding.train; open_clip: train_clip,
        dino: train_dino)."""
        return bool(self.get(ds, "embedding.train")) and self.get(ds, "embedding.kind") == kind

    def has_prompts(self, ds: str) -> bool:
        return self.get(ds, "embedding.kind") == "open_clip" and bool(self.get(ds, "embedding.prompts"))

    def checkpoint(self, ds: str):
        """The encoder's weights as a rule input (a trained encoder's export, or a given file), when set."""
        return self.get(ds, "embedding.checkpoint") or []

    def brushed(self, ds: str) -> bool:
        """Whether brush.maps has an example condition map for the dataset (workflow/rules/brush.smk)."""
        return ds in (self.top("brush.maps") or {})

    def variants(self, ds: str) -> list[str]:
        return list(self.get(ds, "model.variants") or [])

    def res0(self, ds: str) -> int:
        """The first of sample.resolutions: the training resolution, at which FID and the other metrics sample."""
        return self.get(ds, "sample.resolutions")[0]

    # ------------------------------------------------------------------ data inputs
    def downloads(self) -> dict:
        """download directory → its manifest and URL template (datasets sharing slides share one download)."""
        folders = {"wsi": "inputs.slides", "geotiff": "inputs.geotiffs"}
        return {self.get(ds, folders[self.get(ds, "source")]): self.get(ds, "inputs.download")
                for ds in self.datasets if self.get(ds, "source") in folders and self.get(ds, "inputs.download")}

    def input_path(self, ds: str, path: str):
        """Snakemake input for inputs.<key>: the download's failures.tsv, the path itself, or nothing for a glob."""
        value = self.get(ds, path)
        if value in self.downloads():
            return f"{value}/failures.tsv"
        return [] if value is None or glob.has_magic(value) else value

    # ------------------------------------------------------------------ resources
    def resources(self, kind: str) -> dict:
        """The Snakemake resources of a rule kind, params resources.<kind>: a [CPU, GPU] pair takes its second value
        for a dataset trained on GPUs (train.gpus > 0); mem_mb_per_thread / mem_mb_per_gpu add to mem_mb per job
        thread / GPU; gpu: one (one GPU where the dataset has them) or all (train.gpus)."""
        spec = dict(self.top(f"resources.{kind}") or {})
        per_thread, per_gpu = spec.pop("mem_mb_per_thread", 0), spec.pop("mem_mb_per_gpu", 0)
        gpu, mem = spec.pop("gpu", None), spec.get("mem_mb")
        at = lambda value, wc: value[int(self.gpus(wc.ds) > 0)] if isinstance(value, list) else value
        res = {key: (lambda wc, v=v: at(v, wc)) if isinstance(v, list) else v for key, v in spec.items()}
        if per_thread or per_gpu:
            res["mem_mb"] = lambda wc, threads: at(mem, wc) + per_thread * threads + per_gpu * self.gpus(wc.ds)
        if gpu:
            res["gpu"] = lambda wc: self.gpus(wc.ds) if gpu == "all" else min(1, self.gpus(wc.ds))
        return res
