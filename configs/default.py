"""Defaults shared by every experiment; each experiment config starts from ``get_config()``.

Every knob of the models, losses, optimiser, training loop and evaluation lives here, so any
of them can be overridden from the command line, e.g.::

  python train.py --config=configs/digits_add1.py --workdir=/tmp/run \
      --config.loss.lambdas.var_ci=0.3 --config.train.num_steps=2000

Defaults are the reference code's (wyner-model.md §9), except where a comment says why.
"""

import ml_collections

# The λ of every term of the Wyner objective (wyner-model.md §2.4). Distribution-matching,
# agg and reconstruction terms are active when λ > 0; a CI estimator is trained when λ ≥ 0
# (so its estimate is logged even when it is not penalised) and removed when λ < 0.
LAMBDA_KEYS = (
    # distribution matching (symmetric-KL plug-in of a density-ratio estimator)
    "j",
    "cx2y",
    "cy2x",
    "c",
    "mx",
    "my",
    # common-information penalties λ_CI · I(X,Y;Z)
    "var_ci",
    "j_ci",
    "cx2y_ci",
    "cy2x_ci",
    # latent ("agg") matching on z alone
    "var_agg",
    "cx2y_agg",
    "cy2x_agg",
    "c_agg",
    # reconstruction consistency
    "j_rec_x",
    "j_rec_y",
    "cx2y_rec_y",
    "cy2x_rec_x",
    "mx_rec_x",
    "my_rec_y",
    "j_rec_zuv",
)


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 1

    # ---------------------------------------------------------------- data
    config.data = ml_collections.ConfigDict()
    config.data.name = "digits_add1"

    # ---------------------------------------------------------------- model
    config.model = ml_collections.ConfigDict()
    config.model.name = "wyner"  # 'wyner' or 'iiae'
    config.model.family = "mlp"  # 'mlp' (feature vectors) or 'conv' (images)
    config.model.dz = 16
    config.model.du = 8
    config.model.dv = 8
    config.model.prior = "gaussian"  # 'gaussian' N(0, I) or 'uniform' U[-1, 1] (tanh heads)
    # Spectral norm on the final Linear of every feature map with a last activation, as the
    # reference's get_fc does by accident (§7.1). Default True: it is what the paper ran.
    config.model.sn_on_feature_layers = True
    # BatchNorm with the batch's statistics at evaluation, as the reference (it never calls
    # model.eval(), §7.2). False uses the running averages instead.
    config.model.bn_batch_stats_at_eval = True
    config.model.bn_momentum = 0.999  # PyTorch momentum 1e-3
    config.model.bn_epsilon = 1e-3
    # N(0, 1) columns appended to the encoders' inputs (reference --*-encoder-noise-dim):
    # 0 keeps the encoders deterministic, the reference default (§1.2).
    config.model.joint_encoder_noise_dim = 0
    config.model.marginal_encoder_noise_dim = 0
    # 'bfloat16' computes every layer in bf16 (accelerators' matrix units) with float32
    # parameters, optimiser state, BatchNorm statistics and losses; 'float32' everywhere else.
    config.model.compute_dtype = "float32"
    config.model.encoder_negative_slope = 0.2
    config.model.decoder_negative_slope = 0.2

    config.model.mlp = ml_collections.ConfigDict()
    config.model.mlp.encoder_hidden = ()  # reference Sketchy: one Linear[SN] → BN → LReLU
    config.model.mlp.encoder_features = 512
    config.model.mlp.decoder_hidden = (128,)
    config.model.mlp.decoder_act = "relu"  # reference Sketchy decoder: LReLU slope 0
    config.model.mlp.decoder_out_act = "none"  # 'tanh' for data in [-1, 1]
    config.model.mlp.disc_hidden = ()
    config.model.mlp.disc_features = 1024
    config.model.mlp.disc_batchnorm = False
    # BatchNorm in the generator's feature maps and decoders (the reference's
    # --generator-feature-use-batchnorm / --generator-core-use-batchnorm, both on). With batch
    # statistics every call normalises over its own batch, so g_y is a slightly different
    # function on each sampling path; False removes it (mlp family).
    config.model.mlp.generator_batchnorm = True

    config.model.conv = ml_collections.ConfigDict()
    config.model.conv.base = 32  # --base-cc; the decoder and discriminator use 2·base
    config.model.conv.disc_batchnorm_first = False

    # family 'sentence': feature vectors x ↔ token-id captions y (CUB, wyner-model.md §4.2);
    # the reference's widths. text_nets.py says what each one is.
    config.model.sentence = ml_collections.ConfigDict()
    s = config.model.sentence
    s.embed_dim = 128
    s.gen_base = 32
    s.disc_base = 64
    s.gen_x_hidden = (1024, 512)
    s.gen_x_features = 256
    s.gen_joint_hidden = (1024, 1024)
    s.gen_joint_features = 512
    s.dec_x_first = 256
    s.dec_x_hidden = (512, 1024)
    s.disc_x_hidden = (2048, 1024)
    s.disc_x_features = 512
    s.disc_joint_hidden = (2048, 2048)
    s.disc_features = 1024
    s.embedding_noise = 0.25  # D's word-embedding instance noise, × per-dimension std
    # How a sentence network reads a generated caption (logits): 'argmax' tokens (the
    # reference; no adversarial gradient reaches the caption decoder, §7.6) or 'soft'
    # (softmax-weighted embeddings, differentiable). See configs/cub.py for the choice.
    s.discriminator_input = "argmax"
    s.tie_inverse_embedding = True  # g_y's output layer is F_y's embedding transposed

    config.model.disc = ml_collections.ConfigDict()
    config.model.disc.hidden_dim = 512  # latent embedder E_k and head H_k width
    config.model.disc.n_hidden_layers = 1
    config.model.disc.negative_slope = 0.2

    # ---------------------------------------------------------------- loss
    config.loss = ml_collections.ConfigDict()
    config.loss.discriminator = "js"  # js | dv | njw | lc (density-ratio objective)
    config.loss.generator = "symmetric_kl"  # symmetric_kl | forward_kl | reverse_kl | js
    config.loss.label_smoothing = 1.0  # positive label smoothing a of the JS objective
    config.loss.uniform_disc_weights = True  # False: weight each D loss by its λ
    config.loss.recon_x = "l1"
    config.loss.recon_y = "l1"
    config.loss.recon_latent = "l2"
    config.loss.instance_noise = ml_collections.ConfigDict()
    config.loss.instance_noise.xy = 0.25
    config.loss.instance_noise.z = 0.25
    config.loss.instance_noise.uv = 0.25
    # Multiply the x/y noise by the per-feature std of the training data (Sketchy, CUB).
    config.loss.instance_noise.scale_by_data_std = False
    # False turns the discriminator's instance noise off during generator steps.
    config.loss.instance_noise.in_generator_step = True
    config.loss.lambdas = ml_collections.ConfigDict({k: 0.0 for k in LAMBDA_KEYS})

    # IIAE (config.model.name == 'iiae'); iiae.md §2.
    config.iiae = ml_collections.ConfigDict()
    config.iiae.beta = 0.5
    config.iiae.lam = 1.0
    config.iiae.recon_weight = 10.0
    config.iiae.anneal_steps = 2000.0
    config.iiae.logvar_max = 9.21035
    config.iiae.shared_dim = 64
    config.iiae.exclusive_dim = 64
    config.iiae.hidden = (512, 256)
    config.iiae.decoder_hidden = 128
    config.iiae.lr = 2e-4
    config.iiae.b1 = 0.5
    config.iiae.b2 = 0.999
    config.iiae.eps = 1e-8
    # q(z^s|x,y) widths on concat(h_x, h_y): the ZS reference's Dense(512) (§1.2).
    config.iiae.joint_hidden = (512,)
    # 'auto': 'l2' (MSE, ZS reference) for the mlp family, 'l1' (image reference) for conv.
    config.iiae.recon_loss = "auto"
    # 'auto': tanh for image data in [-1, 1], linear for feature vectors; or 'tanh' / 'none'.
    config.iiae.decoder_out_act = "auto"
    # conv family (iiae.md §1.3, flat shared code): encoder channels base·2^i, decoder from
    # 2·base; r-head width; dropout of the first decoder blocks in training (reference 0.5).
    config.iiae.conv_base = 32
    config.iiae.conv_hidden = (256,)
    config.iiae.decoder_dropout = 0.5
    # 'flat': a vector z^s from conv trunks down to 2×2 (above; small images); 'spatial': the
    # 256-px image networks' grid z^s with shared_dim channels (iiae.md §1.3,
    # models/iiae/spatial.py), after trunk_layers stride-2 convs of the encoders (8×8×128 at
    # 256 px with 4 layers); 'flat_fc': the Cars networks, a vector z^s from FC heads on
    # trunk_layers + 1 convs (iiae.md §1.3 "flat", models/iiae/flat_fc.py).
    config.iiae.shared_code = "flat"
    config.iiae.trunk_layers = 4
    config.iiae.bn_momentum = 0.9  # TF running-average decay (same meaning in Flax)
    config.iiae.bn_epsilon = 1e-5
    # The reference evaluates with BN running averages (is_training=False); True uses the
    # evaluation batch's statistics instead.
    config.iiae.bn_batch_stats_at_eval = False

    # ---------------------------------------------------------------- optimisation
    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"  # adam | rmsprop
    config.optim.lr_generator = 1e-4
    config.optim.lr_discriminator = 1e-4
    config.optim.b1 = 0.5
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.amsgrad = True
    config.optim.clip_grad_norm = -1.0  # > 0 clips each network's gradient norm
    # Learning rate: constant (the reference), or held until decay_from·num_steps and then
    # decayed linearly to 0 at num_steps ('linear_tail'), which lets an oscillating
    # adversarial game settle before the final evaluation.
    config.optim.schedule = "constant"  # constant | linear_tail
    config.optim.decay_from = 0.5

    config.ema = ml_collections.ConfigDict()
    config.ema.decay = 0.999
    config.ema.warmup = True  # decay min(d, (1+n)/(10+n)) as torch_ema use_num_updates

    # ---------------------------------------------------------------- loop
    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 64  # global batch, split over all devices
    config.train.num_steps = 1000
    config.train.log_every = 50
    config.train.image_every = 500  # TensorBoard image grids
    config.train.checkpoint_every = 500
    config.train.keep_checkpoints = 3
    config.train.evaluate_at_end = True
    # Evaluate every N steps during training (0: off): TensorBoard eval/<metric> and
    # WORKDIR/eval_metrics.jsonl, on the test split (no dataset here has a validation split).
    config.train.eval_every = 0
    # Global batches assembled ahead of the step by a background thread (wyner_jax/prefetch.py).
    config.train.prefetch = 2
    # Training steps per compiled call (one lax.scan over that many batches): one host
    # dispatch per call. Calls end at every log, checkpoint and image step, so keep those
    # intervals multiples of it (another call length is another compilation).
    config.train.steps_per_call = 1
    # A NaN/Inf in any loss term: 'stop' (name the step and term; nothing after it is saved)
    # or 'skip' (discard that update, continue, count it as train/skipped_updates).
    config.train.on_nonfinite = "stop"

    # ---------------------------------------------------------------- evaluation
    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 64  # BN uses batch statistics at evaluation: keep it = train
    # Keep the checkpoint of the best evaluation in WORKDIR/best_checkpoint (e.g.
    # 'retrieval/mAP@all'; '' off), beside the latest ones; `eval.py --which=best` evaluates it.
    # best_mode 'auto' takes the metric's direction (distances: lower is better) or max/min.
    config.eval.best_metric = ""
    config.eval.best_mode = "auto"
    config.eval.num_joint_samples = 4096
    config.eval.retrieval_ks = (10,)
    config.eval.retrieval_metric = "cosine"
    config.eval.classifier_steps = 1500
    # Evaluation classifier (SmallCNN): conv widths, dense width (its penultimate features
    # feed the Fréchet distances), batch size and Adam learning rate.
    config.eval.classifier_features = (16, 32)
    config.eval.classifier_hidden = 64
    config.eval.classifier_batch_size = 64
    config.eval.classifier_learning_rate = 2e-3
    config.eval.grid_rows = 8
    config.eval.grid_cols = 8
    # Caption data (CUB, wyner-model.md §6.5): CCA dimension k, word-vector dimension,
    # ridge (relative to each view's variance), direction scaling, captions shown per figure.
    config.eval.cca_dim = 40
    config.eval.cca_word_dim = 300
    config.eval.cca_eps = 1e-12
    config.eval.cca_normalization = "unit_norm"
    config.eval.caption_samples = 12
    return config
