"""MNIST-Add1 (wyner-model.md §4.1, §5.1, §6.2–§6.4) with the Variational Wyner model.

  python train.py --config=configs/mnist_add1.py --workdir=runs/mnist_add1
  python eval.py  --config=configs/mnist_add1.py --workdir=runs/mnist_add1

x = an MNIST digit l, y = another MNIST image of digit (l + 1) mod 10, both resized 28→32
bilinearly and mapped to [−1, 1]; 58,066 train pairs (≤ 10,000 per class, one pairing) and
9,632 test pairs (≤ 1,000 per class). The TFDS dataset `mnist` must be prepared once in
array_record format (README "MNIST-Add1 and MNIST–SVHN"):

  pip install -e '.[tfds-prepare]'
  tfds build mnist svhn_cropped --data_dir=$TFDS_DATA_DIR --file_format=array_record

``--config.data.tfds_dir`` points at another data_dir; decoded images, pair indices and the
evaluation classifiers are cached in ``<data_dir>/wyner_jax_cache`` (``data.cache_dir``).

Networks: the reference's 32×32 family (§4.1), ``model.family='conv'`` with base 32:
encoders Conv5s2 32→64→128→256 with BN and LReLU(0.2) to 2×2×256 = 1024, linear heads to
dz = 16, du = dv = 8; decoders Dense[SN](dz+du → 4·4·512) → BN → LReLU → ConvT5s2
512→256→128→c → tanh; discriminator D_F Conv5s2 64→128→256→512 (no BN on the first layer)
→ 2048 on the channel-concatenated pair, per-pair heads E_k = Dense[SN](ℓ→512) → LReLU and
H_k = Dense(2048+512 → 512) → LReLU → Dense(1).

Settings: the reference's where it has them (§3.1, §3.4): Adam-amsgrad lr 1e-4 for both
networks, betas (0.5, 0.999), batch 64, EMA 0.999 with warm-up, instance noise 0.25 on x, y,
z, u, v, BatchNorm on batch statistics everywhere (also at evaluation, so eval batch = 64),
spectral norm on the decoders' first Dense and the E_k (§7.1), and 100 epochs:
num_steps = 100 · ⌊58,066 / 64⌋ = 90,700. The loss weights are not in the reference
(§3.4: every λ defaults to 0), so these are reasoned, as for the digits run:
* λ_j = λ_cx2y = λ_cy2x = 1: match the variational distribution to the joint model and to
  both conditionals with equal weight — joint and both conditional generations are scored;
* λ_c = 1 (cross matching): ties the two conditional paths, which the x→y / y→x coherence
  needs;
* λ_var_ci = 0.1: a mild Wyner common-information penalty (the paper's figures sweep it:
  ``--config.loss.lambdas.var_ci=...``);
* reconstruction λ = 1 on the six data terms (L1 on [−1, 1] pixels) and j_rec_zuv = 1 (L2
  on latents): consistency terms that stabilise the adversarial game.

Evaluation (README "Metrics"): classifier/x_acc, y_acc (a JAX CNN trained on the MNIST
train images at 32 px, test accuracy on MNIST test), coherence/joint over 16,384 prior
samples (the reference's n-samples-for-joint-eval), coherence/x2y, y2x over every test pair,
probe/*, retrieval/*, and Fréchet distances fd/x, fd/y, fd/x2y, fd/y2x on the classifiers'
penultimate features (not comparable with Inception FID).
"""

from configs import default

STEPS_PER_EPOCH = 58_066 // 64
EPOCHS = 100


def get_config():
    config = default.get_config()
    config.data.name = "mnist_add1"
    config.data.tfds_dir = ""  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
    config.data.cache_dir = ""  # '' = <data_dir>/wyner_jax_cache
    config.data.max_per_class = 10000  # the reference's max_d (train)
    config.data.test_max_per_class = 1000  # max_d of the test split
    config.data.multiplier = 1  # the reference's dm
    config.data.pair_seed = 1

    m = config.model
    m.family = "conv"
    m.dz, m.du, m.dv = 16, 8, 8
    m.conv.base = 32  # --base-cc
    m.conv.disc_batchnorm_first = False
    m.disc.hidden_dim = 512
    m.disc.n_hidden_layers = 1

    lam = config.loss.lambdas
    lam.j = lam.cx2y = lam.cy2x = lam.c = 1.0
    lam.var_ci = 0.1
    for k in ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
        lam[k] = 1.0
    lam.j_rec_zuv = 1.0

    config.optim.lr_generator = 1e-4
    config.optim.lr_discriminator = 1e-4
    config.train.batch_size = 64
    config.train.num_steps = EPOCHS * STEPS_PER_EPOCH
    config.train.log_every = 500
    config.train.image_every = 5000
    config.train.checkpoint_every = 5000

    config.eval.batch_size = 64  # BatchNorm uses batch statistics at evaluation
    config.eval.num_joint_samples = 16384
    # The digit classifier: wider than the 8×8 default and ~5 epochs of MNIST train.
    config.eval.classifier_steps = 5000
    config.eval.classifier_features = (32, 64)
    config.eval.classifier_hidden = 128
    return config
