"""CUB image features ↔ captions (paper §6.5; wyner-model.md §4.2, §5.3, §6.5) with the
Variational Wyner model.

  python scripts/cub_resnet_features.py --dir data/cub        # once: the image features
  python train.py --config=configs/cub.py --workdir=runs/cub
  python eval.py  --config=configs/cub.py --workdir=runs/cub
  python train.py --config=configs/cub.py:fixture --config.data.dir=/tmp/cub --workdir=/tmp/r

x = 2048-d ResNet-101 feature of a bird image, y = a caption as 32 token ids (vocabulary:
training words seen more than 3 times), from ``config.data.dir`` in MMVAE's layout (README
"CUB image ↔ caption"). Argument (after ':'): 'full' (default) or 'fixture', the same model
with small widths and a 40-image-sized evaluation for the synthetic data of
``scripts/make_cub_fixture.py`` (smoke runs and tests).

Networks (§4.2, family 'sentence', wyner_jax/text_nets.py): F_x an MLP 2048 → 1024 → 512 →
256, F_y the sentence conv net (embedding 128, base 32, 8192 features), F_xy both plus an
aggregate → 512; decoders: x an MLP z,u → 256[SN] → 512 → 1024 → 2048 (linear, no BN), y the
transposed sentence net with the tied inverse embedding (logits over the vocabulary); D_F:
x MLP → 512, its own sentence net (base 64, word-embedding instance noise 0.25 · std) and an
aggregate → 1024. Instance noise on x: 0.25 · per-feature std of the training images; none on
the token ids. Reconstructions: L2 on image features (the reference's), token cross-entropy
ignoring `<pad>` on captions.

Choices the reference leaves open, and why:
* discriminator_input = 'argmax' (default): the discriminator reads a generated caption as
  its argmax tokens, as the reference does (§7.6), so the published setting is what runs;
  the caption decoder then learns only from the cross-entropy reconstructions and through
  z, never from the adversarial terms. 'soft' (--config.model.sentence.discriminator_input
  =soft) feeds softmax(logits)·E instead, which gives the decoder adversarial gradients; it is
  the variant to try when generated captions are fluent but not coherent with the image.
* dz = 64, du = dv = 32: MMVAE's CUB feature model uses a 64-d latent, and a caption carries
  far more than a digit; the local codes hold phrasing (v) and image detail (u).
* λ_j = λ_cx2y = λ_cy2x = λ_c = 1: all four distributions are matched, as for the other
  paired datasets; the conditionals give f_x and g_y for x → y captioning.
* λ_var_ci = 0.1: a mild common-information penalty, as the other configs.
* reconstruction λ = 1 on every data term and j_rec_zuv = 1: with argmax inputs the caption
  decoder learns only from them.
* batch 64, Adam-amsgrad lr 1e-4 (reference); 138,300 steps = 100 epochs of 88,550 pairs.

Evaluation: ``cca/ground_truth`` (real test pairs), ``cca/x2y`` (test images, a generated
caption each), ``cca/y2x`` (generated image feature, test caption), ``cca/joint``; the CCA
(k = 40) is fitted on the training pairs with this repository's own word vectors, so the
reference's 0.2746 does not transfer (README). ``samples.json`` and
``figures/x2y_captions.png`` show generated captions for test images.
"""

from configs import default

ARGS = ("full", "fixture")


def get_config(arg: str = "full"):
    if arg not in ARGS:
        raise ValueError(f"configs/cub.py takes 'full' or 'fixture', got {arg!r}.")
    config = default.get_config()
    config.data.name = "cub"
    config.data.dir = "data/cub"  # holds text_trainvalclasses.txt, text_testclasses.txt
    config.data.features_dir = ""  # '' = <dir>/resnet101_2048 (train.npy, test.npy)
    config.data.use_tfds = True
    config.data.tfds_dir = ""  # '' = <dir>/tfds
    config.data.captions_per_image = 10
    config.data.max_length = 32
    config.data.min_count = 3

    config.model.family = "sentence"
    config.model.dz = 64
    config.model.du = 32
    config.model.dv = 32
    config.model.sentence.discriminator_input = "argmax"

    config.loss.instance_noise.xy = 0.25
    config.loss.instance_noise.scale_by_data_std = True
    config.loss.recon_x = "l2"
    config.loss.recon_y = "token_ce"
    lam = config.loss.lambdas
    lam.j = lam.cx2y = lam.cy2x = lam.c = 1.0
    lam.var_ci = 0.1
    for k in ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
        lam[k] = 1.0
    lam.j_rec_zuv = 1.0

    config.train.batch_size = 64
    config.train.num_steps = 138_300
    config.train.log_every = 100
    config.train.image_every = 0  # no image grids: the caption figure is made at evaluation
    config.train.checkpoint_every = 5000
    config.eval.batch_size = 64
    config.eval.num_joint_samples = 1024  # the reference: 16 batches of prior samples
    config.eval.cca_dim = 40
    config.eval.cca_word_dim = 300
    config.eval.cca_eps = 1e-12
    config.eval.cca_normalization = "unit_norm"

    if arg == "fixture":
        config.data.dir = "/tmp/cub"
        s = config.model.sentence
        s.gen_base = s.disc_base = 4
        s.gen_x_hidden = s.disc_x_hidden = (32,)
        s.gen_x_features = s.disc_x_features = 32
        s.gen_joint_hidden = s.disc_joint_hidden = (32,)
        s.gen_joint_features = s.disc_features = 32
        s.dec_x_first = 32
        s.dec_x_hidden = (32,)
        config.model.dz = 8
        config.model.du = config.model.dv = 4
        config.model.disc.hidden_dim = 32
        config.train.batch_size = 16
        config.train.num_steps = 20
        config.train.log_every = 10
        config.train.checkpoint_every = 20
        # Batches of 8 divide the fixture's 120 test pairs, the joint samples and the caption
        # rows: one compiled program per inference method.
        config.eval.batch_size = 8
        config.eval.num_joint_samples = 32
        # 40 training images in 2048 dimensions: a real ridge and a small CCA.
        config.eval.cca_dim = 6
        config.eval.cca_word_dim = 16
        config.eval.cca_eps = 1e-2
        config.eval.caption_samples = 8
    return config
