"""What the Snakemake rules read from params.yaml, in one place (imported by workflow/rules/common.smk).

One way to look up config: ``P.get(ds, "train.steps")`` (``datasets.<ds>.train.steps``, None when unset) and
``P.top("demo_world.seed")``. Command flags come from tables of params keys, ``{"train.steps": "--steps"}``:
a rule passes exactly the keys params.yaml sets and the command's own defaults (its library config dataclass)
supply the rest, so no default is written here. What a rule branches on (which rule makes a dataset's store,
which optional outputs a dataset has) is decided from params too, never from a dataset's name.
tests/test_params_usage.py checks that every key path written here or in a rule is a schema key and that every
schema key is read.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shlex

RESULTS = "results"
SOURCE_RULES = {"wsi": "extract_patches", "geotiff": "patch_geotiff", "celebahq": "adapt_celebahq"}


def flag(name: str, value) -> str:
    """One command-line flag: True -> the bare flag, False/None -> nothing, lists space-joined, mappings as
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
        self.config = config
        self.datasets = config["datasets"]

    # ------------------------------------------------------------------ lookup
    def get(self, ds: str, path: str):
        """datasets.<ds>.<path>, or None where a key on the way is absent or null (optional keys)."""
        return self._walk(self.datasets[ds], path)

    def top(self, path: str):
        """A top-level key path such as demo_world.seed."""
        return self._walk(self.config, path)

    @staticmethod
    def _walk(node, path: str):
        for key in path.split("."):
            if not isinstance(node, dict) or node.get(key) is None:
                return None
            node = node[key]
        return node

    def flags(self, ds: str, table: dict[str, str], values: dict | None = None) -> str:
        """The flags of ``table`` (params key path -> flag) whose keys are set for dataset ``ds``; ``values``
        replaces the params value of a key path (a model's own setting, e.g. its guidance scale)."""
        values = values or {}
        return " ".join(f for path, name in table.items()
                        if (f := flag(name, values[path] if path in values else self.get(ds, path))))

    def top_flags(self, table: dict[str, str]) -> str:
        return " ".join(f for path, name in table.items() if (f := flag(name, self.top(path))))

    def flags_of(self, table: dict[str, str]):
        """A Snakemake params function: the flags of ``table`` for the rule's {ds}."""
        return lambda wildcards: self.flags(wildcards.ds, table)

    def value_of(self, path: str):
        """A Snakemake params/input function: datasets.<ds>.<path> ('' when unset)."""
        return lambda wildcards: "" if (v := self.get(wildcards.ds, path)) is None else v

    # ------------------------------------------------------------------ what a dataset is
    def names(self, predicate) -> str:
        """Regex of the dataset names for which predicate(ds) holds (never matches when none does)."""
        return "|".join(re.escape(ds) for ds in self.datasets if predicate(ds)) or "(?!)"

    def source(self, ds: str):
        return self.get(ds, "source")

    def with_source(self, source: str) -> str:
        """Regex of the datasets whose store comes from ``source`` (wsi, geotiff, celebahq): the wildcard
        constraint of that source's rules."""
        return self.names(lambda ds: self.source(ds) == source)

    def gpus(self, ds: str) -> int:
        return int(self.get(ds, "train.gpus") or 0)

    def on_cluster(self, ds: str) -> bool:
        """A dataset trained on GPUs (train.gpus > 0) gets cluster-sized time limits for every rule."""
        return self.gpus(ds) > 0

    def device(self, ds: str) -> str:
        return "auto" if self.gpus(ds) else "cpu"

    def is_label(self, ds: str) -> bool:
        return self.get(ds, "embedding.kind") == "label"

    def embeds(self, ds: str) -> bool:
        return self.get(ds, "embedding.kind") in ("open_clip", "timm", "dino")

    def has_prompts(self, ds: str) -> bool:
        return self.get(ds, "embedding.kind") == "open_clip" and bool(self.get(ds, "embedding.prompts"))

    def has_bach(self, ds: str) -> bool:
        return bool(self.get(ds, "inputs.bach"))

    def trains_clip(self, ds: str) -> bool:
        return self.get(ds, "embedding.kind") == "open_clip" and self.get(ds, "embedding.model") == "democlip"

    def trains_dino(self, ds: str) -> bool:
        return self.get(ds, "embedding.kind") == "dino" and self.made_here(self.get(ds, "embedding.checkpoint"))

    @staticmethod
    def made_here(path) -> bool:
        """A path the pipeline writes (results/...), so a rule input rather than a given file."""
        return bool(path) and str(path).startswith(RESULTS + "/")

    def variants(self, ds: str) -> list[str]:
        return list(self.get(ds, "model.variants") or [])

    def of_variant(self, ds: str, variant: str, per_variant: str, default: str):
        """A model's setting: <per_variant>[<variant>] where set for that variant, else <default> (key paths)."""
        value = (self.get(ds, per_variant) or {}).get(variant) if variant else None
        return value if value is not None else self.get(ds, default)

    def train_steps(self, ds: str, variant: str = "") -> str:
        """--steps of a model: model.variant_steps[<variant>] where set (issue 12: the label demo needs 2,000 steps
        to be controllable), else train.steps."""
        return flag("--steps", self.of_variant(ds, variant, "model.variant_steps", "train.steps"))

    def res0(self, ds: str) -> int:
        return self.get(ds, "sample.resolutions")[0]

    def synthetic_res(self, ds: str) -> int:
        """Resolution of the zero-shot and BACH synthetic images (evaluate.synthetic_resolution, else the first)."""
        return self.get(ds, "evaluate.synthetic_resolution") or self.res0(ds)

    # ------------------------------------------------------------------ data inputs
    def download_dir(self, ds: str):
        key = {"wsi": "inputs.slides", "geotiff": "inputs.geotiffs"}.get(self.source(ds))
        return self.get(ds, key) if key and self.get(ds, "inputs.download") else None

    def downloads(self) -> dict:
        """download directory -> its manifest and URL template (datasets sharing slides share one download)."""
        return {self.download_dir(ds): self.get(ds, "inputs.download") for ds in self.datasets if self.download_dir(ds)}

    def input_path(self, ds: str, path: str):
        """Snakemake input for inputs.<key>: the download's failures.tsv, the path itself, or nothing for a glob."""
        value = self.get(ds, path)
        if value in self.downloads():
            return f"{value}/failures.tsv"
        return [] if value is None or glob.has_magic(value) else value

    def tile_resolution_flags(self, ds: str) -> str:
        """--level N (the schema allows a level only with target_mpp: native), else --target-mpp MPP|native."""
        if self.get(ds, "tiling.level") is not None:
            return flag("--level", self.get(ds, "tiling.level"))
        return flag("--target-mpp", self.get(ds, "tiling.target_mpp"))

    # ------------------------------------------------------------------ resources
    def resources(self, mem_mb, runtime, *, gpu: str | None = None, mem_mb_per_thread: int = 0) -> dict:
        """Snakemake resources of a rule whose needs depend on the dataset (one helper for every such rule).

        ``mem_mb`` and ``runtime`` (minutes): one value, or a pair (on CPUs, on a GPU cluster) whose second value
        applies where the dataset trains on GPUs (train.gpus > 0). ``mem_mb_per_thread``: added per job thread.
        ``gpu``: "one" (one GPU where the dataset has them, else 0), "all" (train.gpus GPUs of one node), or None
        (no gpu resource)."""
        pick = lambda value, wc: value[1 if self.on_cluster(wc.ds) else 0] if isinstance(value, tuple) else value
        res = {"mem_mb": lambda wc, threads: pick(mem_mb, wc) + mem_mb_per_thread * threads,
               "runtime": lambda wc: pick(runtime, wc)}
        if gpu is not None:
            res["gpu"] = {"one": lambda wc: min(1, self.gpus(wc.ds)), "all": lambda wc: self.gpus(wc.ds)}[gpu]
        return res

    # ------------------------------------------------------------------ train
    @staticmethod
    def run_folder(name: str):
        """A Snakemake params function: a trainer's run folder (``--out``: checkpoints, metrics.jsonl), ``name``
        beside the weights the rule exports (``--export``, its first output); rerunning the rule resumes from it."""
        return lambda wc, output: os.path.join(os.path.dirname(output[0]), name)

    def launcher(self, ds: str) -> str:
        """`infbrush`, or torchrun over train.gpus processes on one node."""
        n = self.gpus(ds)
        return f"torchrun --standalone --nproc_per_node {n} -m infbrush" if n > 1 else "infbrush"

    # ------------------------------------------------------------------ the brush (issue 16)
    def brush_maps(self) -> dict:
        """brush.maps: dataset → {map, legend, variant} (the example condition maps the demo renders)."""
        return self.top("brush.maps") or {}

    def brush_inputs(self, ds: str) -> dict:
        entry = self.brush_maps()[ds]
        return {"map": entry["map"], "legend": entry["legend"], "store": f"{RESULTS}/{ds}/images.h5",
                "weights": f"{self.model_dir(ds, entry.get('variant') or '')}/ema.pt"}

    def brush_flags(self, ds: str) -> str:
        """The brush block's flags, and the dataset's own sampler steps (sample.steps: one owner)."""
        flags = self.top_flags({"brush.size": "--size", "brush.chunk_points": "--chunk-points",
                                "brush.crop_fraction": "--crop-fraction", "brush.margin_fraction": "--margin-fraction",
                                "brush.crops_per_region": "--crops-per-region"})
        flags += " " + self.flags(ds, {"sample.steps": "--steps"})
        seeds = self.top("brush.seeds")
        return flags + (" --seeds " + ",".join(str(s) for s in seeds) if seeds else "")

    def sample_processes(self, ds: str) -> int:
        return int(self.get(ds, "sample.processes") or 1)

    def sample_launcher(self, ds: str) -> str:
        """`infbrush`, or torchrun over sample.processes processes that sample each image together (issue 13)."""
        n = self.sample_processes(ds)
        return f"torchrun --standalone --nproc_per_node {n} -m infbrush" if n > 1 else "infbrush"

    @staticmethod
    def variant(wildcards) -> str:
        """The {variant} wildcard of a variant rule (label, ablation_cano), '' for the main model's rule."""
        return wildcards.get("variant", "")

    def model_dir(self, ds: str, variant: str = "") -> str:
        """results/<ds> for the main model, results/<ds>/<variant> for a variant (label, ablation_cano)."""
        return f"{RESULTS}/{ds}/{variant}" if variant else f"{RESULTS}/{ds}"

    def conditioned_on_labels(self, ds: str, variant: str = "") -> bool:
        return variant == "label" or self.is_label(ds)

    def n_classes(self, ds: str, variant: str = "") -> int:
        return self.get(ds, "model.label_classes") if variant == "label" else self.get(ds, "embedding.n_classes")

    def train_inputs(self, ds: str, variant: str = "") -> dict:
        inputs = {"store": f"{RESULTS}/{ds}/images.h5"}
        if not self.conditioned_on_labels(ds, variant):
            inputs["embeddings"] = f"{RESULTS}/{ds}/embeddings.h5"
        return inputs

    def train_cond(self, ds: str, variant: str = "") -> str:
        """The condition of a model (embeddings standardised where train.cond_standardize, smoothed over their
        train.cond_neighbors nearest training embeddings where set), and --no-cano for the ablation (model.cano
        false or the ablation_cano variant: the paper's Table 2)."""
        if self.conditioned_on_labels(ds, variant):
            cond = f"--cond-labels {self.n_classes(ds, variant)}"
        else:
            cond = f"--cond-embeddings {RESULTS}/{ds}/embeddings.h5"
            cond += " --cond-standardize" if self.get(ds, "train.cond_standardize") else ""
            neighbors = self.get(ds, "train.cond_neighbors")
            cond += f" --cond-neighbors {neighbors}" if neighbors else ""
        no_cano = variant == "ablation_cano" or not self.get(ds, "model.cano")
        return cond + (" --no-cano" if no_cano else "")

    def model_args(self, ds: str) -> str:
        """--model-args JSON: model.overrides of the preset's arguments."""
        overrides = self.get(ds, "model.overrides")
        return flag("--model-args", json.dumps(overrides)) if overrides else ""

    def global_batch(self, ds: str) -> int:
        """train.batch_size is per GPU/process; the command takes the global batch."""
        return self.get(ds, "train.batch_size") * max(1, self.gpus(ds))

    def train_resources(self) -> dict:
        """Resources of a training job: train.gpus GPUs with 8 CPUs and 64 GB each for two days (a longer run
        continues after requeue / rerun from its checkpoint), else one CPU hour in 6 GB."""
        gpus = lambda wc: self.gpus(wc.ds)
        return {"gpu": gpus, "cpus_per_gpu": lambda wc: 8 if gpus(wc) else 0,
                "mem_mb": lambda wc: 64000 * gpus(wc) if gpus(wc) else 6000,
                "runtime": lambda wc: 2880 if gpus(wc) else 60}

    # ------------------------------------------------------------------ sample
    def guidance_scale(self, ds: str, variant: str = "") -> float:
        """Guidance scale of a model: sample.variant_guidance_scale[<variant>] where set (issue 12: the demo's label
        models are most controllable at 3, its embedding models at 1-2), else sample.guidance_scale."""
        return self.of_variant(ds, variant, "sample.variant_guidance_scale", "sample.guidance_scale")

    def sample_flags(self, ds: str, table: dict[str, str], variant: str = "") -> str:
        """The sampling flags of ``table``, sample.guidance_scale read as the model's own scale; mpp metadata for
        tiled datasets (tiling.target_mpp at patch_size)."""
        flags = [self.flags(ds, table, {"sample.guidance_scale": self.guidance_scale(ds, variant)})]
        mpp = self.get(ds, "tiling.target_mpp")
        if mpp not in (None, "native"):  # native: the slides' own MPP, unknown here
            flags.append(f"--mpp {mpp} --mpp-size {self.get(ds, 'tiling.patch_size')}")
        return " ".join(flags)

    def sample_inputs(self, ds: str, variant: str = "") -> dict:
        inputs = {"weights": f"{self.model_dir(ds, variant)}/ema.pt", **self.train_inputs(ds)}
        if self.conditioned_on_labels(ds, variant):
            inputs.pop("embeddings", None)
        return inputs

    def sample_cond(self, ds: str, res: str, variant: str = "") -> str:
        """Held-out conditions: every class sample.per_class times (sample.per_class_upscaled beyond the first
        resolution), else sample.n_images; a label-conditioned model: every class equally often."""
        per_class = self.get(ds, "sample.per_class")
        if per_class and str(res) != str(self.res0(ds)):  # 2×, 4×: fewer images (artefact and KID checks only)
            per_class = self.get(ds, "sample.per_class_upscaled") or per_class
        n_images = self.get(ds, "sample.n_images")
        if self.conditioned_on_labels(ds, variant):
            k = self.n_classes(ds, variant)
            return f"--labels {','.join(map(str, range(k)))} --per-class {per_class or max(1, n_images // k)}"
        held_out = f"--cond-embeddings {RESULTS}/{ds}/embeddings.h5 --store {RESULTS}/{ds}/images.h5 --split held-out"
        if per_class:  # every class of the held-out images represented (controllability)
            return f"{held_out} --balanced --per-class {per_class}"
        return f"{held_out} --n-images {n_images}"

    # ------------------------------------------------------------------ evaluate
    def clip_checkpoint(self, ds: str):
        """Weights of the FID CLIP: evaluate.clip_checkpoint, else the dataset's own embedding checkpoint when it
        is the same model."""
        explicit = self.get(ds, "evaluate.clip_checkpoint")
        if explicit:
            return explicit
        if self.get(ds, "embedding.model") == self.get(ds, "evaluate.clip_model"):
            return self.get(ds, "embedding.checkpoint")
        return None

    def encoder_checkpoint(self, ds: str) -> list:
        """The embedding checkpoint as a rule input (democlip.pt, dino.pt, or a given file), when set."""
        ckpt = self.get(ds, "embedding.checkpoint")
        return [ckpt] if ckpt else []

    def embed_inputs(self, store: str):
        """Snakemake input function of an embedding rule: the image store results/<ds>/<store>.h5 and the encoder's
        checkpoint (embed: the images, embed_bach: the BACH set)."""
        return lambda wc: {"store": f"{RESULTS}/{wc.ds}/{store}.h5", "checkpoint": self.encoder_checkpoint(wc.ds)}

    def control_inputs(self, ds: str, variant: str = "") -> dict[str, str]:
        """The store, the model's 1× held-out samples and, for an embedding-conditioned model, the embeddings its
        samples were conditioned on (control reports what the conditions themselves tell of the class)."""
        inputs = {"store": f"{RESULTS}/{ds}/images.h5",
                  "samples": f"{self.model_dir(ds, variant)}/samples/{self.res0(ds)}/index.json"}
        if not self.conditioned_on_labels(ds, variant):
            inputs["embeddings"] = f"{RESULTS}/{ds}/embeddings.h5"
        return inputs

    def control_goal_flags(self, ds: str, variant: str = "") -> str:
        """--goal: evaluate.control_label_goal for a label-conditioned model, evaluate.control_goal otherwise;
        --judge-goal: evaluate.control_judge_goal."""
        goal = "evaluate.control_label_goal" if self.conditioned_on_labels(ds, variant) else "evaluate.control_goal"
        return self.flags(ds, {goal: "--goal", "evaluate.control_judge_goal": "--judge-goal"})

    def report_inputs(self, ds: str) -> dict:
        """Everything the report shows for this dataset; the report itself tolerates any of them missing."""
        root = f"{RESULTS}/{ds}"
        inputs = {"fid": f"{root}/fid.json",
                  "samples": [f"{root}/samples/{r}/index.json" for r in self.get(ds, "sample.resolutions")],
                  "viewer": f"{root}/viewer/index.html"}  # viewer.smk builds it; the report links its preview
        if self.has_prompts(ds):
            inputs["zeroshot"] = f"{root}/zeroshot.json"
        if self.has_bach(ds):
            inputs["bach"] = f"{root}/bach.json"
        if self.get(ds, "evaluate.control"):
            inputs["control"] = f"{root}/control.json"
            inputs.update({f"control_{v}": f"{root}/{v}/control.json" for v in self.variants(ds) if v == "label"})
        if self.trains_dino(ds):
            inputs["dino"] = f"{root}/dino.json"
        if self.trains_clip(ds):
            inputs["democlip"] = f"{root}/democlip.json"
        if self.get(ds, "evaluate.spectrum"):
            inputs["spectrum"] = f"{root}/spectrum.json"
        if self.get(ds, "evaluate.ablation_cano"):
            inputs["ablation"] = f"{root}/ablation_cano.json"
        if ds in ((self.config.get("brush") or {}).get("maps") or {}):  # workflow/rules/brush.smk (issue 16)
            inputs["brush"] = f"{root}/brush.json"
        return inputs

    # ------------------------------------------------------------------ targets
    def targets(self, ds: str) -> list[str]:
        """The files that make up a dataset's finished chain (the report needs most of them)."""
        root = f"{RESULTS}/{ds}"
        out = [f"{root}/images.h5"] if self.source(ds) in SOURCE_RULES else []
        out += [f"{root}/bach.h5"] if self.has_bach(ds) else []
        out += [f"{root}/embeddings.h5"] if self.embeds(ds) else []
        out += [f"{root}/text_embeddings.h5"] if self.has_prompts(ds) else []
        out += [f"{root}/ema.pt"] + [f"{root}/{v}/ema.pt" for v in self.variants(ds)]
        return out + [f"{root}/report.html", f"{root}/viewer/index.html"]

    def default_targets(self) -> list[str]:
        return [path for ds in self.config["default_datasets"] for path in self.targets(ds)]
