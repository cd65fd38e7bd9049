"""IIAE's 256-px image networks with the spatial shared code (iiae.md §1.3), the Maps /
Facades / MNIST-CDCB configs (§5), and a short train + evaluate run on a pix2pix fixture:
pair Recall@1 on shared and exclusive codes, translation grids, reconstructions."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import iiae_facades, iiae_maps, iiae_mnist_cdcb
from configs import maps as wyner_maps
from configs import mnist_cdcb as wyner_cdcb
from tests.tolerances import approx
from wyner_jax import losses, nets, trainer
from wyner_jax.models.base import build_model
from wyner_jax.models.iiae import IIAEModel, SpatialArch, iiae_loss, join_codes

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
from make_pix2pix_fixture import make_fixture  # noqa: E402


class Shapes:
    """Just the shapes a model is built from."""

    def __init__(self, size):
        self.x_shape = self.y_shape = (size, size, 3)


def test_reference_networks_at_256_px():
    config = iiae_maps.get_config()
    model = IIAEModel(config, Shapes(256))
    assert isinstance(model.arch, SpatialArch) and model.arch.shared_shape == (8, 8, 128)
    batch = {"x": jnp.zeros((2, 256, 256, 3)), "y": jnp.zeros((2, 256, 256, 3))}
    state = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)  # shapes only
    p = state.params
    shapes = {
        "/".join(k.key for k in path): a.shape
        for path, a in jax.tree_util.tree_flatten_with_path(p)[0]
    }
    # exclusive encoder: 4 convs 32..256 to 16×16, flatten 65,536 → Dense(2·8)
    assert shapes["q_x/ConvStack_0/Conv2x_3/kernel"] == (4, 4, 128, 256)
    assert shapes["q_x/Dense_0/kernel"] == (16 * 16 * 256, 16)
    # r-head: one conv on R to 8×8×(2·128); q(z^s|x,y): one conv on concat(R_x, R_y)
    assert shapes["r_x_head/Conv2x_0/kernel"] == (4, 4, 256, 256)
    assert shapes["q_s/Conv2x_0/kernel"] == (4, 4, 512, 256)
    # decoder: [z^s, tiled z^x] = 136 channels → 512, 256, 128, 64 → 3
    assert shapes["dec_x/ConvTranspose2x_0/kernel"] == (4, 4, 136, 512)
    assert shapes["dec_x/ConvTranspose2x_3/kernel"] == (4, 4, 128, 64)
    assert shapes["dec_x/ConvTranspose2x_4/kernel"] == (4, 4, 64, 3)
    assert not any("BatchNorm" in k for k in shapes if k.startswith(("q_s", "r_x_head")))
    assert 16.7e6 < nets.tree_size(p) < 16.9e6  # "about 16.8 M" (iiae.md §1.3)
    eps = model.sample_eps(jax.random.PRNGKey(1), 2)
    assert eps["q_s"].shape == (2, 8, 8, 128) and eps["q_x"].shape == (2, 8)


def test_per_dataset_settings_are_the_references():
    for module, beta, weight in (
        (iiae_maps, 0.02, 20000.0),
        (iiae_facades, 0.001, 1000.0),
        (iiae_mnist_cdcb, 0.2, 1000.0),
    ):
        c = module.get_config()
        assert (c.iiae.beta, c.iiae.lam, c.iiae.recon_weight) == (beta, 1.0, weight)
        assert (c.iiae.anneal_steps, c.train.batch_size, c.iiae.exclusive_dim) == (25000.0, 8, 8)
        assert c.data.image_size == 256 and module.get_config("64").data.image_size == 64
    with pytest.raises(ValueError, match="power of two"):
        iiae_maps.get_config("100")


def test_join_codes_tiles_the_exclusive_code():
    z_s = jnp.arange(2 * 3 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 3, 4)
    z_e = jnp.array([[10.0, 11.0], [20.0, 21.0]])
    out = np.asarray(join_codes(z_s, z_e))
    assert out.shape == (2, 3, 3, 6)
    np.testing.assert_array_equal(out[..., :4], z_s)
    for n in range(2):
        for i in range(3):
            for j in range(3):
                np.testing.assert_array_equal(out[n, i, j, 4:], z_e[n])
    np.testing.assert_array_equal(join_codes(z_e, z_e), np.concatenate([z_e, z_e], -1))


def small_config(module=iiae_maps, size=64):
    config = module.get_config(str(size))
    c = config.iiae
    c.conv_base, c.shared_dim, c.exclusive_dim = 4, 4, 2
    return config


def test_spatial_kl_sums_over_the_whole_grid():
    config = small_config()
    model = IIAEModel(config, Shapes(64))
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 64, 64, 3), minval=-1.0, maxval=1.0)
    batch = {"x": x, "y": -x}
    state = jax.jit(model.init)(jax.random.PRNGKey(1), batch)
    apply = jax.jit(
        lambda v, x, y, eps: model.net.apply(
            v, x, y, eps, train=True, dropout=False, mutable=["batch_stats"]
        )
    )
    out, _ = apply(
        {"params": state.params, "batch_stats": state.batch_stats},
        x,
        -x,
        model.sample_eps(jax.random.PRNGKey(2), 4),
    )
    assert out["q_s"][0].shape == (4, 2, 2, 4) and out["x_hat"].shape == (4, 64, 64, 3)
    _, terms = iiae_loss(out, x, -x, jnp.asarray(10), model.loss_cfg)
    # float32 KLs against float64 closed forms of the same float32 codes. Each is a small
    # difference of O(1) terms summed over the 2×2×4 grid and averaged over the batch: the
    # scale is the terms' magnitudes summed the same way, the depth the 16-term sum, the
    # 4-term mean and the few operations of a term. (Measured: 0.5·eps·|KL|.)
    def grid_sum_batch_mean(a):
        return a.reshape(4, -1).sum(1).mean()

    depth = 16 + 4 + 4
    mu, lv = (np.asarray(a, np.float64) for a in out["q_s"])
    expected = grid_sum_batch_mean(0.5 * (-1 - lv + mu**2 + np.exp(lv)))
    terms_s = grid_sum_batch_mean(0.5 * (1 + np.abs(lv) + mu**2 + np.exp(lv)))
    assert float(terms["kl_s"]) == approx(expected, depth=depth, scale=terms_s)
    mr, lr = (np.asarray(a, np.float64) for a in out["r_x"])
    ratio = ((mu - mr) ** 2 + np.exp(lv)) / np.exp(lr)
    expected_rx = grid_sum_batch_mean(0.5 * (-1 - lv + lr + ratio))
    terms_rx = grid_sum_batch_mean(0.5 * (1 + np.abs(lv) + np.abs(lr) + ratio))
    assert float(terms["kl_rx"]) == approx(expected_rx, depth=depth, scale=terms_rx)
    # The loss's KL is the library's KL (one float32 function, jitted in the loss and not here).
    assert float(terms["kl_s"]) == approx(
        float(losses.gaussian_kl_standard_normal(*out["q_s"])), depth=depth, scale=terms_s
    )


def test_spatial_code_needs_the_conv_family_and_a_divisible_side():
    config = small_config()
    config.model.family = "mlp"
    with pytest.raises(ValueError, match="family='conv'"):
        IIAEModel(config, Shapes(64))
    with pytest.raises(ValueError, match="multiple of 32"):
        IIAEModel(small_config(), Shapes(48))


@pytest.mark.slow
@pytest.mark.heavy
def test_train_and_evaluate_on_the_maps_fixture(tmp_path):
    folder = make_fixture(str(tmp_path / "maps"), "maps", n_train=16, n_test=12, half_size=48)
    config = small_config(iiae_maps, 64)
    config.data.dir = folder
    config.train.num_steps = 3
    config.train.log_every = 1
    config.train.checkpoint_every = 3
    config.eval.batch_size = 12  # the 12 test rows in one batch: one shape, one compile
    workdir = tmp_path / "run"
    metrics = trainer.train_and_evaluate(config, str(workdir))
    for key in ("R@1_x2y", "R@1_y2x", "R@1_excl_x2y", "R@1_excl_y2x"):
        assert 0.0 <= metrics[f"retrieval/{key}"] <= 1.0, key
    assert metrics["retrieval/R@1_chance"] == pytest.approx(1 / 12)
    assert not any(k.startswith(("probe/", "coherence/")) for k in metrics)
    figs = workdir / "figures"
    grid = np.asarray(Image.open(figs / "x2y_style_grid.png"))
    # 6 content rows + the style row, 6 - 2 styles + input and target columns, 64-px cells
    assert grid.shape == (7 * 65 + 1, 6 * 65 + 1, 3)
    assert np.all(grid[1:65, 1:65] == 255)  # the blank corner
    for name in ("y2x_style_grid", "x2y_grid", "reconstructions", "joint_samples"):
        assert os.path.getsize(figs / f"{name}.png") > 1000, name


def test_wyner_conv_family_scales_to_256_px_with_capped_widths():
    config = wyner_maps.get_config()
    model = build_model(config, Shapes(256))
    batch = {"x": jnp.zeros((8, 256, 256, 3)), "y": jnp.zeros((8, 256, 256, 3))}
    state = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
    kernels = {
        "/".join(k.key for k in path): a.shape
        for path, a in jax.tree_util.tree_flatten_with_path(state.gen_params)[0]
        if path[-1].key == "kernel" and path[0].key == "F_x"
    }
    widths = [shape[-1] for name, shape in sorted(kernels.items())]
    assert widths == [32, 64, 128, 256, 256, 256, 256]  # 7 halvings 256 -> 2, capped at 8·32
    d_f = jax.tree_util.tree_leaves(state.disc_params["D_F"])
    assert max(a.shape[-1] for a in d_f) == 512  # D_F: base 64, capped at 8·64


@pytest.mark.slow
@pytest.mark.heavy
def test_wyner_trains_and_evaluates_on_the_cdcb_fixture(tmp_path):
    folder = make_fixture(str(tmp_path / "cdcb"), "mnist_cdcb", n_train=16, n_test=8)
    config = wyner_cdcb.get_config("32")
    config.data.dir = folder
    m = config.model
    m.conv.base, m.dz, m.disc.hidden_dim = 4, 8, 16
    # Only the terms that train f_x and f_y (retrieval needs z_x, z_y): a faster compile;
    # the metrics' presence is the point here, not their values.
    lam = config.loss.lambdas
    for k in ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
        lam[k] = 0.0
    lam.j_rec_zuv = lam.j = lam.c = 0.0
    lam.var_ci = -1.0
    config.train.num_steps = 2
    config.train.checkpoint_every = 2
    workdir = tmp_path / "run"
    metrics = trainer.train_and_evaluate(config, str(workdir))
    assert 0.0 <= metrics["retrieval/R@1_x2y"] <= 1.0
    assert 0.0 <= metrics["retrieval/R@1_y2x"] <= 1.0
    assert metrics["retrieval/R@1_chance"] == pytest.approx(1 / 8)
    assert "retrieval/R@1_excl_x2y" not in metrics  # no exclusive encoder of x alone
    assert os.path.getsize(workdir / "figures" / "x2y_grid.png") > 500
