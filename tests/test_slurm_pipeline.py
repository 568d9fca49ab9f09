"""The pipeline itself on the local SLURM cluster (.ci/slurm/start.sh): real sbatch/srun jobs."""
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from e2e_helpers import copy_repo, run  # noqa: E402
from slurm_helpers import clean_env, require_slurm, run_bounded, run_snakemake_slurm  # noqa: E402
from test_ddp import train_args  # noqa: E402
from test_train import losses, make_store  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_demo_first_stages_under_slurm_match_the_local_run(tmp_path):
    require_slurm()
    targets = ["data/demo/manifest.json", "results/demo_naip/images.h5"]
    local = copy_repo(tmp_path / "local", git=False)
    run([sys.executable, "-m", "snakemake", "--cores", "2", *targets], local, timeout=600)
    cluster = copy_repo(tmp_path / "cluster", git=False)
    proc = run_snakemake_slurm(cluster, targets, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "sbatch" in proc.stdout or "SLURM" in proc.stdout  # jobs really went through the executor
    assert json.loads((cluster / "data/demo/manifest.json").read_text())["files"] == \
        json.loads((local / "data/demo/manifest.json").read_text())["files"]
    with h5py.File(local / targets[1], "r") as a, h5py.File(cluster / targets[1], "r") as b:
        for name in ("images", "ids", "labels", "split", "window", "transform"):
            np.testing.assert_array_equal(a[name][:], b[name][:])


def test_ddp_training_as_a_two_task_srun_job_matches_single_process(tmp_path):
    """`srun -n 2`: each task reads SLURM_PROCID / SLURM_NTASKS and joins one gloo process group."""
    require_slurm()
    make_store(tmp_path / "images.h5", n=7, held_out=(3,), labels=[0, 1, 0, 1, 1, 0, 1])
    env = clean_env({"OMP_NUM_THREADS": "1"})
    single = run_bounded([sys.executable, *train_args(tmp_path, "single")], cwd=tmp_path, timeout=300, env=env)
    assert single.returncode == 0, single.stdout[-3000:]
    ddp = run_bounded(["srun", "-n", "2", "--mem-per-cpu=2000", sys.executable, *train_args(tmp_path, "ddp")],
                      cwd=tmp_path, timeout=300, env=env)
    assert ddp.returncode == 0, ddp.stdout[-3000:]
    np.testing.assert_allclose(losses(tmp_path / "ddp"), losses(tmp_path / "single"), rtol=1e-4)
    # one process group of two ranks (not two independent single-process runs): per-rank RNG states
    import torch

    checkpoint = torch.load(tmp_path / "ddp" / "ckpt_00000004.pt", weights_only=True)
    assert len(checkpoint["rng"]) == 2
    assert [json.loads(x)["step"] for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
