"""Where the pipeline keeps each dataset's results: one path function per file of ``results/<ds>/``.

The Snakemake rules name their outputs and inputs with these, and so can anything that reads the results back
(the report, the viewer): the layout is written here once. Pure paths, no settings: given a dataset name a
function returns that dataset's file; given the wildcards ``"{ds}"`` / ``"{variant}"`` / ``"{res}"`` it returns a
rule's output pattern. A model variant (``label``, ``ablation_cano``: a second model of the same dataset) keeps
its weights, samples and control scores under ``results/<ds>/<variant>/``; the functions of a model's files take
the variant as their second argument ('' for the main model).
"""
from __future__ import annotations

from typing import Callable

RESULTS = "results"


def dataset_dir(ds: str) -> str:
    """``results/<ds>``: everything made for one dataset (the report's ``--results``)."""
    return f"{RESULTS}/{ds}"


def model_dir(ds: str, variant: str = "") -> str:
    """The main model's folder, ``results/<ds>``, or a variant's, ``results/<ds>/<variant>``."""
    return f"{RESULTS}/{ds}/{variant}" if variant else dataset_dir(ds)


def _of_dataset(name: str) -> Callable[[str], str]:
    """The path function of a dataset's file: ds → results/<ds>/<name>."""
    return lambda ds: f"{dataset_dir(ds)}/{name}"


def _of_model(name: str) -> Callable[..., str]:
    """The path function of a model's file: (ds, variant='') → <the model's folder>/<name>."""
    return lambda ds, variant="": f"{model_dir(ds, variant)}/{name}"


# data
tiles = _of_dataset("tiles/failures.tsv")            # the tiler's skipped slides, written last: the finished tiles/
images = _of_dataset("images.h5")                    # the image store every later stage reads
bach_store = _of_dataset("bach.h5")                  # the BACH-like labelled set of the downstream experiment

# the encoders the pipeline trains (embedding.train), and the conditions
clip_weights = _of_dataset("democlip.pt")            # `infbrush train-clip`: the pipeline's own small CLIP
clip_scores = _of_dataset("democlip.json")           # its zero-shot accuracy, written beside the weights
dino_weights = _of_dataset("dino.pt")                # `infbrush train-dino --export`: the teacher backbone
dino_scores = _of_dataset("dino.json")               # its k-NN report, written beside the weights
dino_run = _of_dataset("dino_ckpt")                  # its run folder (checkpoints, metrics.jsonl): a rerun resumes
embeddings = _of_dataset("embeddings.h5")            # of the image store's images
bach_embeddings = _of_dataset("bach_embeddings.h5")  # of the BACH images
text_embeddings = _of_dataset("text_embeddings.h5")  # of the class prompts (zero-shot, text-conditioned samples)

# models
weights = _of_model("ema.pt")                        # exported EMA weights (`infbrush train --export`)
train_run = _of_model("train")                       # the trainer's run folder: a rerun resumes from it
control = _of_model("control.json")                  # how well the model's samples show their condition's class

# measurements and views
fid_ref = _of_dataset("fid_ref.npz")                 # reference statistics of the real images
fid = _of_dataset("fid.json")                        # CLIP FID / Crop FID / KID of the main model
ablation_cano = _of_dataset("ablation_cano.json")    # the same for the model without CANO
zeroshot = _of_dataset("zeroshot.json")              # zero-shot classification of text-conditioned samples
zeroshot_plot = _of_dataset("zeroshot.png")
bach_scores = _of_dataset("bach.json")               # BACH classifiers trained on real vs synthetic images
spectrum = _of_dataset("spectrum.json")              # radial spectra of samples against real images
spectrum_plot = _of_dataset("spectrum.png")
brush = _of_dataset("brush.json")                    # the brush's layout control
brush_image = _of_dataset("brush/brush.png")         # its painted image; the other figures beside it in brush/
large_field = _of_dataset("large_field.json")        # whole-image model against patch-based assembly
large_field_gallery = _of_dataset("large_field.png")  # reference | whole image | patch-based fields
large_field_fields = _of_dataset("large_fields")     # every generated field, a PNG per method and reference
viewer = _of_dataset("viewer/index.html")            # the zoomable viewer (opens from disk)
report = _of_dataset("report.html")


def samples(ds: str, res, variant: str = "", cond: str = "") -> str:
    """The index of a model's sample set at resolution ``res``: ``samples/<res>/`` (conditioned on held-out
    images), or ``samples_<cond>/<res>/`` (``text``: the class prompts, ``bach``: the BACH images)."""
    return f"{model_dir(ds, variant)}/samples{'_' + cond if cond else ''}/{res}/index.json"
