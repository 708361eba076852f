import matplotlib.image as mpimg
import pytest
import torch

from pyro_vae.plots import plot_latents, plot_manifold, save_image_grid
from pyro_vae.models.vae import VAE


def test_manifold_needs_two_latent_dimensions(tmp_path):
    with pytest.raises(ValueError, match="needs z_dim = 2, this VAE has z_dim = 3"):
        plot_manifold(VAE(4, z_dim=3, hidden=(3,)), (1, 2, 2), tmp_path / "m.png")
    path = plot_manifold(VAE(4, z_dim=2, hidden=(3,)), (1, 2, 2), tmp_path / "m.png", n=5)
    assert mpimg.imread(path).ndim == 3


def test_image_grid_tiles_values_in_unit_range(tmp_path):
    images = torch.linspace(-1, 2, 6 * 12).reshape(6, 12)  # clamped to [0, 1]
    path = save_image_grid(images, (1, 3, 4), tmp_path / "g.png", nrow=3)
    assert mpimg.imread(path).shape[1] >= 4 * 120  # at least 4 inches at 120 dpi


@pytest.mark.parametrize("z_dim", [1, 2, 5])
def test_latent_scatter_any_dimension(tmp_path, z_dim):
    vae = VAE(4, z_dim=z_dim, hidden=(3,))
    assert plot_latents(vae, torch.rand(30, 4), torch.randint(3, (30,)), tmp_path / "l.png").exists()
