"""Settings shared by the image-to-image configs (Maps, Facades, MNIST-CDCB; iiae.md §5),
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
