"""Settings shared by the image-to-image configs (Maps, Facades, MNIST-CDCB, Cars; iiae.md §5),
for both models: the data block, the batch, the evaluation, and IIAE's image networks.
The per-dataset values the reference forces live in each config file
(``configs/iiae_maps.py`` etc.); the Wyner configs are ``configs/maps.py`` etc.

The config argument (after ':') is the image side: '256' (default, the reference) or a
smaller power of two for CPU smoke runs, e.g. ``--config=configs/iiae_maps.py:64``.
"""

from configs import default

DATASETS = ("maps", "facades", "mnist_cdcb")
# run_cross_vae.py's max_steps default (no --max_steps or --max_epochs in the README command).
REFERENCE_STEPS = 1_012_000
BATCH = 8  # the reference's batch_size
GRID = 6  # rows and columns of the figure grids (256-px cells)


def image_size(arg) -> int:
    """The image side from the config argument ('256', '64', ...)."""
    try:
        size = int(arg)
    except (TypeError, ValueError):
        size = 0
    if size < 32 or size & (size - 1):
        raise ValueError(
            f"The image-pair configs take the image side as argument, a power of two >= 32 "
            f"(256 is the reference, 64 a CPU smoke size), got {arg!r}; e.g. "
            "--config=configs/iiae_maps.py:64."
        )
    return size


def base_config(dataset: str, arg="256"):
    """The default config with the data, batch, loop and evaluation of these experiments."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown image-pair dataset {dataset!r}; use one of {DATASETS}.")
    config = default.get_config()
    d = config.data
    d.name = dataset
    d.dir = ""  # '' = data/maps, data/facades, data/MNIST-CDCB
    d.image_size = image_size(arg)
    d.train_split = ""  # '' = the dataset's (train)
    d.test_split = ""  # '' = the dataset's (Maps: pix2pix's val = IIAE's test; else test)
    d.direction = "AtoB"  # x = left half, as the reference for all three datasets
    d.cache_dir = ""  # '' = <dir>/wyner_jax_cache
    d.max_train = 0  # > 0: only the first files (smoke runs)
    d.max_test = 0
    return _loop_and_eval(config)


def cars_config(arg="256"):
    """The default config with the data, batch, loop and evaluation of the Cars experiment
    (iiae.md §5.1): x = a car's azimuth-0 view, y = the same car at one of the 23 other
    azimuths, same elevation; car ids ≤ 191 train (16,192 pairs), 192–199 test. The
    reference's 1,012,000 steps are exactly its 500 epochs of 2,024 batches of 8."""
    config = default.get_config()
    d = config.data
    d.name = "cars"
    d.dir = ""  # '' = data/cars (Reed et al.'s car_XXX_mesh.mat files)
    d.image_size = image_size(arg)
    d.train_max_id = 191  # preprocess_cars.py: ids 1-191 train, 192-199 test
    d.cache_dir = ""  # '' = <dir>/wyner_jax_cache
    d.max_train_cars = 0  # > 0: only the first cars of a split (smoke runs)
    d.max_test_cars = 0
    config = _loop_and_eval(config)
    # The azimuth probes embed the training pairs; fewer, evenly spaced, bound the cost.
    config.eval.view_probe_max_train = 0  # 0 = all
    return config


def _loop_and_eval(config):
    config.model.family = "conv"
    config.train.batch_size = BATCH
    config.train.num_steps = REFERENCE_STEPS
    config.train.log_every = 100
    config.train.image_every = 10000
    config.train.checkpoint_every = 10000

    e = config.eval
    e.batch_size = 32  # BatchNorm uses running averages at evaluation (IIAE); memory only
    e.grid_rows = e.grid_cols = GRID
    e.num_joint_samples = GRID * GRID // 2  # only the figure: no classifier on these data
    e.instance_retrieval_ks = (1,)  # the reference's Recall@1 (iiae.md §5.3)
    return config


def configure_iiae(config):
    """IIAE's image networks and optimiser (iiae.md §1.3, §5.2), shared by the three
    datasets: spatial z^s of shared_dim = 128 channels (8×8×128 at 256 px), exclusive codes
    of 8, encoder widths 32·2^i (neef = nsef = 32), decoder widths 64·2^i (ndf = 64), dropout
    0.5 on the first two decoder blocks, L1 reconstruction, tanh outputs, Adam 2e-4 / 0.5,
    BatchNorm momentum 0.9, eps 1e-5, running averages at evaluation. λ = 1 for all three."""
    config.model.name = "iiae"
    c = config.iiae
    c.shared_code = "spatial"
    c.trunk_layers = 4
    c.shared_dim = 128  # channels of z^s
    c.exclusive_dim = 8  # exdim
    c.conv_base = 32  # neef = nsef; the decoder uses 2·32 = ndf
    c.decoder_dropout = 0.5
    c.recon_loss = "l1"
    c.decoder_out_act = "tanh"
    c.lam = 1.0  # LAMBDA
    c.lr = 2e-4
    c.b1 = 0.5
    c.bn_momentum = 0.9
    c.bn_epsilon = 1e-5
    c.bn_batch_stats_at_eval = False
    return config


def configure_wyner(config):
    """The Variational Wyner model on these data, with the same batch (8) and steps as IIAE.

    Networks: the §4.1 conv family (5×5 stride-2 convs with BN + LReLU to 2×2, deconvs from
    4×4×512) with as many stride-2 layers as the image side needs (7 at 256 px) and channels
    that stop doubling at 8·base (``model.conv.max_doublings = 3``): the 32-px family's widest
    layer, where uncapped doubling would reach 64·base = 2048 channels (4096 in D_F) at 256 px.
    Codes: dz = 128 (IIAE's flat shared dimension, shdim), du = dv = 8 (IIAE's exdim).
    Loss weights: those of the MNIST configs (the reference ships none; reasons in
    ``configs/mnist_add1.py``): λ_j = λ_cx2y = λ_cy2x = λ_c = 1, λ_var_ci = 0.1, L1
    reconstructions 1, j_rec_zuv 1. BatchNorm uses batch statistics at evaluation (reference
    §7.2), so the evaluation batch equals the training batch. Untuned on these data.
    """
    config.model.name = "wyner"
    m = config.model
    m.family = "conv"
    m.dz, m.du, m.dv = 128, 8, 8
    m.conv.base = 32
    m.conv.max_doublings = 3
    m.conv.disc_batchnorm_first = False
    m.disc.hidden_dim = 512
    m.disc.n_hidden_layers = 1
    lam = config.loss.lambdas
    lam.j = lam.cx2y = lam.cy2x = lam.c = 1.0
    lam.var_ci = 0.1
    for k in ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
        lam[k] = 1.0
    lam.j_rec_zuv = 1.0
    config.eval.batch_size = BATCH
    return config
