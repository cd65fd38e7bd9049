"""IIAE's Cars experiment (iiae.md §1.3 "flat" networks, §2, §5.1, §5.4): the conv + FC
networks at the reference size, the configs' settings, the same-car retrieval and azimuth
probes against brute force, and train + evaluate runs on a fixture in the .mat layout."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import cars as wyner_cars
from configs import iiae_cars
from wyner_jax import data, nets, trainer
from wyner_jax.evaluation import runner
from wyner_jax.models.base import build_model
from wyner_jax.models.iiae import FlatArch, IIAEModel
from wyner_jax.evaluation.view_eval import (
    azimuth_probes,
    car_retrieval_metrics,
    nearest_neighbours,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
from make_cars_fixture import make_fixture  # noqa: E402


class Shapes:
    """Just the shapes a model is built from."""

    def __init__(self, size):
        self.x_shape = self.y_shape = (size, size, 3)


def param_shapes(params) -> dict[str, tuple[int, ...]]:
    return {
        "/".join(k.key for k in path): a.shape
        for path, a in jax.tree_util.tree_flatten_with_path(params)[0]
    }


def test_flat_networks_at_256_px_are_the_references():
    model = IIAEModel(iiae_cars.get_config(), Shapes(256))
    assert isinstance(model.arch, FlatArch) and model.arch.shared_shape == (128,)
    batch = {"x": jnp.zeros((2, 256, 256, 3)), "y": jnp.zeros((2, 256, 256, 3))}
    state = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)  # shapes only
    s = param_shapes(state.params)
    # exclusive encoder: 4 convs 32..256 to 16×16, flattened 65,536 → Dense(2·8)
    assert s["q_x/ConvStack_0/Conv2x_3/kernel"] == (4, 4, 128, 256)
    assert s["q_x/Dense_0/kernel"] == (16 * 16 * 256, 16)
    # r-trunk: 5 convs to 8×8×256 (widths stop doubling at 256); head Dense(256) → Dense(2·128)
    widths = [s[f"r_x_trunk/Conv2x_{i}/kernel"][-1] for i in range(5)]
    assert widths == [32, 64, 128, 256, 256] and "r_x_trunk/Conv2x_5/kernel" not in s
    assert s["r_x_head/Dense_0/kernel"] == (8 * 8 * 256, 256)
    assert s["r_x_head/Linear_0/dense/kernel"] == (256, 256)
    # q(z^s|x,y): the two flattened trunks (32,768) → Dense(256) → Dense(2·128)
    assert s["q_s/Dense_0/kernel"] == (2 * 16384, 256)
    assert s["q_s/Linear_0/dense/kernel"] == (256, 256)
    # decoder: [z^s, z^x] (136) → Dense(8·8·512), then 512, 256, 128, 64 → 3 at 256²
    assert s["dec_x/Dense_0/kernel"] == (136, 8 * 8 * 512)
    deconv = [s[f"dec_x/SpatialDecoder_0/ConvTranspose2x_{i}/kernel"] for i in range(5)]
    assert [k[-2:] for k in deconv] == [(512, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    assert 46.8e6 < nets.tree_size(state.params) < 47.0e6  # the module docstring's "about 47 M"
    eps = model.sample_eps(jax.random.PRNGKey(1), 2)
    assert eps["q_s"].shape == (2, 128) and eps["q_x"].shape == (2, 8)


def test_cars_settings_are_the_references():
    c = iiae_cars.get_config()
    i = c.iiae
    assert (i.beta, i.lam, i.recon_weight, i.anneal_steps) == (0.02, 1.0, 1000.0, 100.0)
    assert (i.shared_code, i.shared_dim, i.exclusive_dim, i.conv_base) == ("flat_fc", 128, 8, 32)
    assert (c.train.batch_size, c.train.num_steps, c.iiae.recon_loss) == (8, 1_012_000, "l1")
    assert (c.data.name, c.data.image_size, c.data.train_max_id) == ("cars", 256, 191)
    assert iiae_cars.get_config("64").data.image_size == 64
    w = wyner_cars.get_config("64")
    assert (w.model.name, w.model.dz, w.data.name, w.train.batch_size) == ("wyner", 128, "cars", 8)
    with pytest.raises(ValueError, match="power of two"):
        iiae_cars.get_config("100")


def test_flat_networks_need_the_conv_family_and_a_divisible_side():
    config = iiae_cars.get_config("64")
    config.model.family = "mlp"
    with pytest.raises(ValueError, match="family='conv'"):
        IIAEModel(config, Shapes(64))
    with pytest.raises(ValueError, match="multiple of 32"):
        IIAEModel(iiae_cars.get_config("64"), Shapes(48))
    config = iiae_cars.get_config("64")
    config.iiae.shared_code = "grid"
    with pytest.raises(ValueError, match="'flat_fc'"):
        IIAEModel(config, Shapes(64))


# --------------------------------------------------------------------------- evaluation


def test_nearest_neighbours_match_brute_force_with_ties_to_the_lower_index():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 3, (40, 3)).astype(np.float32)  # small integers: many exact ties
    g = rng.integers(0, 3, (25, 3)).astype(np.float32)
    d = ((q[:, None, :].astype(np.float64) - g[None]) ** 2).sum(-1)
    expected = [int(np.flatnonzero(row == row.min())[0]) for row in d]
    np.testing.assert_array_equal(nearest_neighbours(q, g, chunk=7), expected)
    with pytest.raises(ValueError):
        nearest_neighbours(q, g[:, :2])


class Views:
    def __init__(self, car, elevation, azimuth):
        self.car, self.elevation, self.azimuth = map(np.asarray, (car, elevation, azimuth))


def grid_views(cars, elevations=2, azimuths=24):
    c, e, a = np.meshgrid(cars, np.arange(elevations), np.arange(1, azimuths), indexing="ij")
    return Views(c.ravel(), e.ravel(), a.ravel())


def test_same_car_recall_against_codes_with_known_answers():
    views = grid_views([192, 193, 195], elevations=2, azimuths=5)  # 3 cars × 2 × 4 = 24 pairs
    n = len(views.car)
    frontal = np.arange(0, n, 4)  # the first pair of every (car, elevation)
    ids = np.searchsorted([192, 193, 195], views.car)
    rng = np.random.default_rng(1)
    car_code = np.eye(3)[ids] + 0.01 * rng.normal(size=(n, 3))
    m = car_retrieval_metrics(car_code, car_code, views, frontal)
    assert m == {"R@1_x2y": 1.0, "R@1_y2x": 1.0, "R@1_chance": pytest.approx(1 / 3)}
    # Constant codes: every nearest neighbour is gallery item 0 (car 192).
    const = np.zeros((n, 4))
    m = car_retrieval_metrics(const, const, views, frontal)
    assert m["R@1_x2y"] == pytest.approx(2 / 6)  # the two frontal queries of car 192
    assert m["R@1_y2x"] == pytest.approx(8 / 24)  # the 8 rotated views of car 192
    # Brute force on random codes.
    zx, zy = rng.normal(size=(n, 5)), rng.normal(size=(n, 5))
    m = car_retrieval_metrics(zx, zy, views, frontal)
    d = ((zx[frontal][:, None] - zy[None]) ** 2).sum(-1)
    hits = views.car[d.argmin(1)] == views.car[frontal]
    assert m["R@1_x2y"] == pytest.approx(hits.mean())
    hits = views.car[frontal][d.T.argmin(1)] == views.car
    assert m["R@1_y2x"] == pytest.approx(hits.mean())


def test_azimuth_probes_separate_an_azimuth_code_from_a_car_code():
    train, test = grid_views(np.arange(1, 9)), grid_views([192, 193])
    rng = np.random.default_rng(2)

    def codes(views):
        azimuth = np.eye(23)[views.azimuth - 1] + 0.05 * rng.normal(size=(len(views.car), 23))
        car = rng.normal(size=(len(views.car), 4)) + views.car[:, None] % 7  # no azimuth in it
        return {"excl": azimuth, "shared": car}

    acc = azimuth_probes(codes(train), codes(test), train.azimuth, test.azimuth, 24)
    assert acc["excl"] == 1.0
    assert acc["shared"] < 0.15  # chance is 1/23
    with pytest.raises(ValueError, match=r"\[0, 23\)"):
        azimuth_probes(codes(train), codes(test), train.azimuth + 1, test.azimuth, 24)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def cars_dir(tmp_path_factory):
    return make_fixture(str(tmp_path_factory.mktemp("cars")), car_ids=(1, 2, 4, 192, 194), size=32)


def small_iiae(folder):
    config = iiae_cars.get_config("32")
    c = config.iiae
    c.conv_base, c.shared_dim, c.exclusive_dim, c.conv_hidden, c.joint_hidden = 4, 8, 2, (8,), (8,)
    config.data.dir = folder
    config.train.num_steps = 2
    config.train.checkpoint_every = 2
    config.eval.grid_rows = config.eval.grid_cols = 4
    return config


@pytest.mark.slow
@pytest.mark.heavy
def test_iiae_evaluation_on_the_cars_fixture(cars_dir, tmp_path):
    """The evaluation of an initialised model (training is the heavy test below)."""
    config = small_iiae(cars_dir)
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    batch = {"x": jnp.asarray(dataset.train.x[:8]), "y": jnp.asarray(dataset.train.y[:8])}
    state = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    workdir = tmp_path / "run"
    metrics = runner.evaluate_and_write(model, state, dataset, config, str(workdir))
    check_iiae_outputs(metrics, workdir)


@pytest.mark.slow
@pytest.mark.heavy
def test_iiae_trains_and_evaluates_on_the_cars_fixture(cars_dir, tmp_path):
    workdir = tmp_path / "run"
    check_iiae_outputs(trainer.train_and_evaluate(small_iiae(cars_dir), str(workdir)), workdir)


def check_iiae_outputs(metrics, workdir):
    for key in ("R@1_x2y", "R@1_y2x"):
        assert 0.0 <= metrics[f"retrieval/{key}"] <= 1.0, key
    assert metrics["retrieval/R@1_chance"] == pytest.approx(1 / 2)  # two test cars
    for key in ("azimuth_from_excl", "azimuth_from_shared"):
        assert 0.0 <= metrics[f"probe/{key}"] <= 1.0, key
    assert metrics["probe/azimuth_chance"] == pytest.approx(1 / 23)
    assert not any(k.startswith(("coherence/", "classifier/")) for k in metrics)
    figs = workdir / "figures"
    sweep = np.asarray(Image.open(figs / "azimuth_sweep.png"))
    # style row + (translation, truth) rows for the 2 test cars; input column + 23 azimuths
    assert sweep.shape == ((1 + 2 * 2) * 33 + 1, 24 * 33 + 1, 3)
    assert np.all(sweep[1:33, 1:33] == 255)  # the blank corner
    for name in ("x2y_style_grid", "y2x_style_grid", "x2y_grid", "reconstructions"):
        assert os.path.getsize(figs / f"{name}.png") > 500, name


@pytest.mark.slow
@pytest.mark.heavy
def test_wyner_trains_and_evaluates_on_the_cars_fixture(cars_dir, tmp_path):
    config = wyner_cars.get_config("32")
    config.data.dir = cars_dir
    m = config.model
    m.conv.base, m.dz, m.du, m.dv, m.disc.hidden_dim = 4, 8, 2, 2, 16
    config.train.num_steps = 2
    config.train.checkpoint_every = 2
    workdir = tmp_path / "run"
    metrics = trainer.train_and_evaluate(config, str(workdir))
    assert 0.0 <= metrics["retrieval/R@1_x2y"] <= 1.0
    assert 0.0 <= metrics["probe/azimuth_from_shared"] <= 1.0
    assert "probe/azimuth_from_excl" not in metrics  # no exclusive encoder of y alone
    assert not (workdir / "figures" / "azimuth_sweep.png").exists()
    assert os.path.getsize(workdir / "figures" / "x2y_grid.png") > 500
