"""Function-space diffusion: schedule, mollified noise, point sampling, loss and DDIM (paper sec. 3-4)."""
from infbrush.diffusion.ddim import ddim_sample, initial_noise
from infbrush.diffusion.guidance import GuidedDenoiser
from infbrush.diffusion.samplers import SAMPLERS, make_sampler
from infbrush.diffusion.loss import training_loss
from infbrush.diffusion.mollifier import mollified_noise_grid, mollified_noise_points, mollify_image
from infbrush.diffusion.points import index_to_coords, lattice_coords, n_points_for, sample_points
from infbrush.diffusion.schedule import T, cosine_alpha_bar, ddim_step, ddim_timesteps, eps_from_x0, predict_x0

__all__ = [
    "T", "cosine_alpha_bar", "ddim_step", "ddim_timesteps", "predict_x0", "eps_from_x0",
    "mollified_noise_points", "mollified_noise_grid", "mollify_image",
    "sample_points", "lattice_coords", "index_to_coords", "n_points_for",
    "training_loss", "ddim_sample", "initial_noise", "GuidedDenoiser", "SAMPLERS", "make_sampler",
]
