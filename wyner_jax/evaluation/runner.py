"""Runs every evaluator that applies to a trained model and dataset, and writes the results.

Evaluation uses ``model.eval_variables(state)`` (the EMA generator for the Wyner model) and
the model's inference methods, batched by ``config.eval.batch_size``: with BatchNorm on
batch statistics at evaluation (the reference's behaviour) the batch size matters, so it
defaults to the training batch size.

Metric names (all in ``metrics.json``):

* ``classifier/x_acc``, ``classifier/y_acc``: test accuracy of the evaluation classifiers;
* ``coherence/x2y``: share of generated y ~ p(y|x) classified as the label the pairing
  rule gives x (add-1: label(x)+1 mod 10); ``coherence/y2x`` the converse; ``coherence/joint``
  share of joint samples (x, y) ~ p(x, y) whose labels obey the rule;
* ``fd/x``, ``fd/y``: Fréchet distance between joint samples x (y) ~ p(x, y) and the real
  test images of that domain; ``fd/x2y``: class-conditional Fréchet distance between the
  generated y ~ p(y|x) of every test pair and the real test y of the target class, mean over
  classes (wyner-model.md §6.4, one sample per test pair instead of 32 references × 2,048
  samples); ``fd/y2x`` the converse. Features: the evaluation classifiers' penultimate
  activations, so the values are **not comparable with Inception FID** nor with the
  reference's tables, only between runs with the same classifiers (lower is better);
* ``probe/z_xy``, ``probe/z_x``, ``probe/z_y``: linear softmax probe accuracy on the joint
  / marginal representations (targets: label of y, of x, of y; wyner-model.md §6.3);
* ``retrieval/mAP@all``, ``retrieval/mAP@all_interp``, ``retrieval/P@k``: x-queries (z_x)
  against the y-gallery (z_y), relevant when the labels match under the pairing rule. When
  the dataset has its own retrieval sets (``retrieval_x``/``retrieval_y`` with labels, e.g.
  Sketchy: all test sketches against all test photos, wyner-model.md §6.6), queries are
  embedded by the marginal x encoder and the gallery by the y encoder separately;
  ``retrieval/mAP@k`` for k in ``config.eval.retrieval_map_ks`` (Sketchy split 2: 200),
  and a per-class AP bar chart ``figures/retrieval_per_class_ap.png``. Such zero-shot data
  have disjoint train and test classes, so the linear probes are skipped;
* ``retrieval/R@1_x2y``, ``retrieval/R@1_y2x``: pair Recall@1 on instance-paired images
  (``instance_retrieval.py``), or same-car Recall@1 on view-indexed pairs (Cars,
  ``view_eval.py``, with ``probe/azimuth_from_excl`` and ``probe/azimuth_from_shared``);
* ``gaussian/x2y_slope``, ``gaussian/x2y_resid_var``, the same for y2x, and
  ``gaussian/joint_var_x``, ``joint_var_y``, ``joint_cov_xy`` (Gaussian data: measured on x→y,
  y→x and joint samples),
  with ``gaussian/rho`` and ``gaussian/closed_form/wyner_ci`` (dim·artanh|ρ|), which are not
  measurements: the data's correlation and Wyner's common information computed from the
  config, reported for reference.
"""

from __future__ import annotations

import weakref

import jax
from absl import logging
import jax.numpy as jnp
import numpy as np

from wyner_jax import paths
from wyner_jax.evaluation import figures, translation_figures
from wyner_jax.evaluation.classifier import train_image_classifier
from wyner_jax.evaluation.coherence import add_one, coherence
from wyner_jax.evaluation.frechet import conditional_frechet_distance, frechet_distance
from wyner_jax.evaluation.instance_retrieval import instance_retrieval_metrics
from wyner_jax.evaluation.gaussian import (
    gaussian_mutual_information,
    joint_covariance,
    regression_slope_and_residual_variance,
    wyner_ci_under_instance_noise,
    wyner_common_information_gaussian,
)
from wyner_jax.evaluation.probe import linear_probe_accuracy
from wyner_jax.evaluation.retrieval import (
    pairwise_distances,
    per_class_average_precision,
    retrieval_metrics,
    retrieval_per_query,
    summarize_per_query,
)
from wyner_jax.metrics_writer import log_progress, write_eval_scalars, write_json_atomic

EVAL_SEED = 12345


def batched(fn, arrays, batch_size: int, key=None):
    """Applies ``fn(*batch[, key_i])`` over rows of ``arrays`` in batches; concatenates outputs.

    Rows are visited in a fixed random order and the outputs put back in place: with
    BatchNorm on batch statistics at evaluation (the reference's default), a batch of
    class-sorted test data would be normalised per class, which erases the class signal.
    The reference shuffles its test loaders for the same reason. The final short batch is
    processed as it is (no padding).
    """
    n = len(arrays[0])
    order = np.random.default_rng(EVAL_SEED).permutation(n)
    outs = []
    for i, start in enumerate(range(0, n, batch_size)):
        rows = order[start : start + batch_size]
        chunk = [jnp.asarray(a[rows]) for a in arrays]
        args = chunk + ([jax.random.fold_in(key, i)] if key is not None else [])
        outs.append(jax.device_get(fn(*args)))
    inverse = np.argsort(order)
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0)[inverse], *outs)


OPTIONAL_METHODS = ("embed_exclusive", "translate_x2y_style", "translate_y2x_style")


class Inference:
    """The model's inference methods, jit-compiled with the variables as an argument (not
    baked into the program as constants, which would make every compile unique)."""

    # One set of compiled functions per model object (train.py's periodic image grids and
    # the final evaluation share them).
    _JITS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def __init__(self, model, state, config):
        self.model = model
        self.variables = model.eval_variables(state)
        self.caps = model.capabilities(state)
        self.bs = int(config.eval.batch_size)
        # Optional methods (IIAE: exclusive codes, translation with another item's exclusive
        # code) are compiled when the model has them.
        for name in ("embed", "translate_x2y", "translate_y2x", "reconstruct", *OPTIONAL_METHODS):
            if hasattr(model, name):
                self.compiled(model, name)
        jits = self._JITS[model]
        jits.setdefault("sample_joint", jax.jit(model.sample_joint, static_argnums=2))
        self._jits = jits
        v = self.variables
        self._embed = lambda x, y: jits["embed"](v, x, y)
        self._x2y = lambda x, k: jits["translate_x2y"](v, x, k)
        self._y2x = lambda y, k: jits["translate_y2x"](v, y, k)
        self._recon = lambda x, y: jits["reconstruct"](v, x, y)
        self._joint = lambda k, n: jits["sample_joint"](v, k, n)

    @classmethod
    def compiled(cls, model, name: str):
        """``jax.jit(model.<name>)``, compiled once per model object and method (periodic
        evaluations reuse it: a fresh ``jax.jit`` of a bound method compiles again)."""
        jits = cls._JITS.setdefault(model, {})
        if name not in jits:
            jits[name] = jax.jit(getattr(model, name))
        return jits[name]

    def embed(self, x, y):
        return batched(self._embed, (x, y), self.bs)

    def has(self, name: str) -> bool:
        """Whether the model offers the optional method ``name`` (``OPTIONAL_METHODS``)."""
        return name in self._jits

    def call(self, name: str, a, b):
        """An optional two-input method over rows of (a, b), batched."""
        fn, v = self._jits[name], self.variables
        return batched(lambda p, q: fn(v, p, q), (a, b), self.bs)

    def x2y(self, x, key):
        return batched(self._x2y, (x,), self.bs, key)

    def y2x(self, y, key):
        return batched(self._y2x, (y,), self.bs, key)

    def reconstruct(self, x, y):
        return batched(self._recon, (x, y), self.bs)

    def joint(self, n, key):
        outs = [
            jax.device_get(self._joint(jax.random.fold_in(key, i), min(self.bs, n - s)))
            for i, s in enumerate(range(0, n, self.bs))
        ]
        return tuple(np.concatenate(parts, 0) for parts in zip(*outs))


def target_labels(dataset, labels_x):
    """The label y should have for an x of class ``labels_x`` under the pairing rule."""
    if dataset.label_rule == "add1":
        return add_one(labels_x, dataset.num_classes)
    return labels_x


# Trained classifiers of this process: training one is the slowest part of a small
# evaluation, and several runs in one process (e.g. ``wyner_jax.compare``) share them. The
# key is the data config itself, so a rebuilt dataset with the same config hits the cache.
_CLASSIFIERS: dict = {}


def classifier_settings(config) -> dict:
    """``train_image_classifier`` keyword arguments from ``config.eval`` (defaults for configs
    written before the width / batch / learning-rate keys existed)."""
    e = config.eval
    return dict(
        steps=int(e.classifier_steps),
        features=tuple(int(f) for f in e.get("classifier_features", (16, 32))),
        hidden=int(e.get("classifier_hidden", 64)),
        batch_size=int(e.get("classifier_batch_size", 64)),
        learning_rate=float(e.get("classifier_learning_rate", 2e-3)),
    )


def classifiers(dataset, config):
    """Evaluation classifiers for x and y (trained once when both sides share a domain).

    Datasets that name a cache folder and their domains' images (``cache_dir`` and
    ``domain_keys``, e.g. MNIST / SVHN from TFDS) keep the trained classifiers on disk there,
    so every run and every evaluation of that data uses the same instrument.
    """
    out = {}
    settings = classifier_settings(config)
    data_key = config.data.to_json(sort_keys=True)
    cache_dir = getattr(dataset, "cache_dir", "") or None
    domain_keys = getattr(dataset, "domain_keys", {}) or {}
    for side in ("x", "y"):
        domain = dataset.domains[side]
        shared = dataset.domains["x"] is dataset.domains["y"]
        key = (data_key, "xy" if shared else side, tuple(sorted(settings.items())))
        if key not in _CLASSIFIERS:
            _CLASSIFIERS[key] = train_image_classifier(
                domain,
                dataset.num_classes,
                seed=0,
                image_shape=getattr(dataset, f"{side}_image_shape"),
                cache_dir=cache_dir if side in domain_keys else None,
                cache_key=domain_keys.get(side, ""),
                **settings,
            )
        out[side] = _CLASSIFIERS[key]
    return out


def frechet_metrics(dataset, clf, gen, test) -> dict[str, float]:
    """``fd/x``, ``fd/y``, ``fd/x2y``, ``fd/y2x`` on the classifiers' penultimate features.

    Real sets are the domains' test images (``Domain.test_images``); joint samples are
    compared with them as a whole, conditional samples per target class (the label the
    pairing rule gives the condition), averaged over classes. A distance that cannot be
    computed (fewer than 2 samples of a class) is left out with a warning.
    """
    if clf["x"].features is None or clf["y"].features is None:
        return {}
    dom = dataset.domains
    real = {s: clf[s].features(dom[s].test_images) for s in ("x", "y")}
    real_labels = {s: np.asarray(dom[s].test_labels) for s in ("x", "y")}
    jobs = {}
    if "joint" in gen:
        jobs["fd/x"] = lambda: frechet_distance(clf["x"].features(gen["joint"][0]), real["x"])
        jobs["fd/y"] = lambda: frechet_distance(clf["y"].features(gen["joint"][1]), real["y"])
    for direction, out_side, target in (("x2y", "y", test.label_y), ("y2x", "x", test.label_x)):
        if direction in gen:
            jobs[f"fd/{direction}"] = lambda d=direction, o=out_side, t=target: (
                conditional_frechet_distance(
                    real[o], real_labels[o], clf[o].features(gen[d]), t, dataset.num_classes
                )
            )
    metrics = {}
    for name, job in jobs.items():
        try:
            metrics[name] = float(job())
        except ValueError as e:
            logging.warning("No %s: %s", name, e)
    return metrics


def predict(clf, images, batch_size=512):
    return np.concatenate(
        [
            np.argmax(np.asarray(clf.apply(images[i : i + batch_size])), -1)
            for i in range(0, len(images), batch_size)
        ]
    )


def check_evaluation_settings(dataset, config) -> None:
    """Refuses, before training, evaluation settings the data cannot satisfy (so a run does
    not train to the end and then lose its evaluation): every retrieval cut-off k
    (``eval.retrieval_ks``, ``eval.retrieval_map_ks``) must lie in [1, gallery size]."""
    if getattr(dataset, "retrieval_y", None) is not None:
        gallery, what = len(dataset.retrieval_y), "the zero-shot retrieval gallery (test photos)"
        keys = ("retrieval_ks", "retrieval_map_ks")
    elif dataset.num_classes is not None and not getattr(dataset, "instance_pairs", False):
        gallery, what = len(dataset.test.y), "the retrieval gallery (the test set's y)"
        keys = ("retrieval_ks",)
    else:
        return
    for key in keys:
        for k in config.eval.get(key, ()):
            if not 1 <= int(k) <= gallery:
                raise ValueError(
                    f"config.eval.{key} contains k={k}, but {what} has {gallery} items, so "
                    f"P@k / mAP@k cannot be computed at the end of training; set "
                    f"--config.eval.{key} to cut-offs between 1 and {gallery}."
                )


def gaussian_ci_metrics(model, state, dataset, config, emb_test, key) -> dict[str, float]:
    """The CI I(X,Y;Z) on Gaussian pairs: closed form under the CI discriminator's instance
    noise and two estimates of the trained model (Wyner model only; IIAE has no CI term).

    * ``gaussian/closed_form/ci_under_instance_noise``: what a perfect estimator reports for
      Wyner's optimal Z when x, y carry σ_xy and z carries σ_z noise (from the config).
    * ``gaussian/var_ci_estimate``: the trained CI discriminator's E_q[T] over the test set
      (the generator's ``gen/var_ci``, averaged over every test row, not one batch).
    * ``gaussian/ci_gaussian_fit``: the same information from the second moments of
      (x', y', z'), z from the evaluated joint encoder: no discriminator involved.
    """
    noise = config.loss.instance_noise
    if "z_xy" not in emb_test or not hasattr(model, "ci_estimate"):
        return {}
    sigma_xy, sigma_z = float(noise.xy), float(noise.z)
    test, dim = dataset.test, dataset.x_shape[0]
    out = {
        "gaussian/closed_form/ci_under_instance_noise": dim
        * wyner_ci_under_instance_noise(config.data.rho, sigma_xy, sigma_z)
    }
    rng = np.random.default_rng(EVAL_SEED)

    def noisy(a, sigma):
        return a + sigma * rng.standard_normal(a.shape)

    xy = np.concatenate([noisy(test.x, sigma_xy), noisy(test.y, sigma_xy)], axis=1)
    out["gaussian/ci_gaussian_fit"] = gaussian_mutual_information(
        xy, noisy(emb_test["z_xy"], sigma_z)
    )
    if "var_ci" in model.terms.ci:
        fn = Inference.compiled(model, "ci_estimate")
        bs, n = int(config.eval.batch_size), len(test.x)
        # Batch means weighted by batch sizes: the mean of T over every test row.
        total = sum(
            float(fn(state, test.x[s : s + bs], test.y[s : s + bs], jax.random.fold_in(key, i)))
            * len(test.x[s : s + bs])
            for i, s in enumerate(range(0, n, bs))
        )
        out["gaussian/var_ci_estimate"] = total / n
    return out


def evaluate(
    model, state, dataset, config, extras: dict | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Computes every applicable metric; returns (metrics, figure images). Other outputs
    (caption data: ``samples``, written to samples.json) go into ``extras`` when given."""
    inf = Inference(model, state, config)
    key = jax.random.PRNGKey(EVAL_SEED)
    k_x2y, k_y2x, k_joint, k_fig = jax.random.split(key, 4)
    test, train = dataset.test, dataset.train
    metrics: dict[str, float] = {}
    labelled = dataset.num_classes is not None

    # Representations: linear probes and cross-domain retrieval.
    emb_test = inf.embed(test.x, test.y)
    zero_shot = getattr(dataset, "retrieval_x", None) is not None
    extra_images = {}
    if labelled and zero_shot:
        r, extra_images = zero_shot_retrieval(inf, dataset, config)
        metrics.update(r)
    if getattr(dataset, "instance_pairs", False):
        # Instance-paired images (Maps, Facades, MNIST-CDCB): pair Recall@k, iiae.md §5.3.
        ks = tuple(config.eval.get("instance_retrieval_ks", (1,)))
        codes = dict(emb_test)
        if inf.has("embed_exclusive"):
            codes.update(inf.call("embed_exclusive", test.x, test.y))
        r = instance_retrieval_metrics(codes, ks)
        metrics.update({f"retrieval/{k}": v for k, v in r.items()})
    views = getattr(dataset, "test_views", None) is not None
    if views:  # view-indexed pairs (Cars): same-car R@1 and azimuth probes, view_eval.py
        from wyner_jax.evaluation.view_eval import evaluate_views

        m, view_images = evaluate_views(inf, dataset, config, emb_test)
        metrics.update(m)
        extra_images.update(view_images)
    if labelled and not zero_shot:
        emb_train = inf.embed(train.x, train.y)
        targets = {"z_xy": "label_y", "z_x": "label_x", "z_y": "label_y"}
        for name, target in targets.items():
            if name in emb_test:
                metrics[f"probe/{name}"] = linear_probe_accuracy(
                    emb_train[name],
                    getattr(train, target),
                    emb_test[name],
                    getattr(test, target),
                    dataset.num_classes,
                    seed=0,
                )
        if "z_x" in emb_test and "z_y" in emb_test:
            r = retrieval_metrics(
                emb_test["z_x"],
                emb_test["z_y"],
                target_labels(dataset, test.label_x),
                test.label_y,
                ks=tuple(config.eval.retrieval_ks),
                metric=config.eval.retrieval_metric,
            )
            metrics.update({f"retrieval/{k}": float(v) for k, v in r.items()})

    # Generation: coherence under the evaluation classifiers.
    gen = {}
    # Instance-paired images and car views have no metric on translations of the whole test
    # set (10,000 MNIST-CDCB pairs at 256 px would be 7.9 GB per direction); their figures
    # translate a few rows themselves.
    need_translations = not (getattr(dataset, "instance_pairs", False) or views)
    if "x2y" in inf.caps and need_translations:
        gen["x2y"] = inf.x2y(test.x, k_x2y)
    if "y2x" in inf.caps and need_translations:
        gen["y2x"] = inf.y2x(test.y, k_y2x)
    if "joint" in inf.caps:
        gen["joint"] = inf.joint(int(config.eval.num_joint_samples), k_joint)
    if getattr(dataset, "vocab", None):  # captions (CUB): CCA scores and caption samples
        from wyner_jax.evaluation.caption_eval import evaluate_captions

        m, caption_images, samples = evaluate_captions(inf, dataset, config, gen, k_fig)
        metrics.update(m)
        extra_images.update(caption_images)
        if extras is not None:
            extras["samples"] = samples
    if labelled and dataset.domains:
        clf = classifiers(dataset, config)
        metrics["classifier/x_acc"] = float(clf["x"].test_accuracy)
        metrics["classifier/y_acc"] = float(clf["y"].test_accuracy)
        if "x2y" in gen:
            metrics["coherence/x2y"] = coherence(predict(clf["y"], gen["x2y"]), test.label_y)
        if "y2x" in gen:
            metrics["coherence/y2x"] = coherence(predict(clf["x"], gen["y2x"]), test.label_x)
        if "joint" in gen:
            lx, ly = predict(clf["x"], gen["joint"][0]), predict(clf["y"], gen["joint"][1])
            metrics["coherence/joint"] = coherence(ly, target_labels(dataset, lx))
        metrics.update(frechet_metrics(dataset, clf, gen, test))

    if dataset.name == "gaussian":
        # Closed forms: slopes rho, residual variances 1 - rho², joint [[1, rho], [rho, 1]].
        for direction, cond in (("x2y", test.x), ("y2x", test.y)):
            if direction in gen:
                slope, resid = regression_slope_and_residual_variance(cond, gen[direction])
                metrics[f"gaussian/{direction}_slope"] = float(slope)
                metrics[f"gaussian/{direction}_resid_var"] = float(resid)
        if "joint" in gen:
            for k, v in joint_covariance(*gen["joint"]).items():
                metrics[f"gaussian/joint_{k}"] = v
        metrics["gaussian/rho"] = float(config.data.rho)
        # From the config, not from the model: named closed_form/ so nobody reads it as an
        # estimate. The estimates follow (gaussian_ci_metrics).
        metrics["gaussian/closed_form/wyner_ci"] = float(
            wyner_common_information_gaussian(config.data.rho) * dataset.x_shape[0]
        )
        k_ci = jax.random.fold_in(key, 5)  # its own stream, apart from the four above
        metrics.update(gaussian_ci_metrics(model, state, dataset, config, emb_test, k_ci))

    metrics = {k: float(v) for k, v in metrics.items()}
    images = make_figures(inf, dataset, config, gen, k_fig)
    images.update(extra_images)
    return metrics, images


def zero_shot_retrieval(inf, dataset, config) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Retrieval on the dataset's own query/gallery sets (paper §6.6, Sketchy ZS-SBIR).

    Queries ``dataset.retrieval_x`` are embedded by the marginal encoder z_x = f_x(x) (IIAE:
    the mean of r(z^s|x)), the gallery ``dataset.retrieval_y`` by f_y (r(z^s|y)); the other
    input of ``model.embed`` is zeros and its outputs are discarded. Returns the
    ``retrieval/*`` metrics and a per-class AP bar chart.
    """
    qx, gy = dataset.retrieval_x, dataset.retrieval_y
    zeros_y = np.zeros((len(qx),) + tuple(dataset.y_shape), np.float32)
    zeros_x = np.zeros((len(gy),) + tuple(dataset.x_shape), np.float32)
    zq, zg = inf.embed(qx, zeros_y), inf.embed(zeros_x, gy)
    if "z_x" not in zq or "z_y" not in zg:
        return {}, {}
    per_query = retrieval_per_query(
        zq["z_x"],
        zg["z_y"],
        dataset.retrieval_label_x,
        dataset.retrieval_label_y,
        ks=tuple(config.eval.retrieval_ks),
        metric=config.eval.retrieval_metric,
        map_ks=tuple(config.eval.get("retrieval_map_ks", ())),
    )
    metrics = {f"retrieval/{k}": v for k, v in summarize_per_query(per_query).items()}
    classes, ap = per_class_average_precision(per_query["mAP@all"], dataset.retrieval_label_x)
    names = getattr(dataset, "class_names", None)
    labels = [names[c] if names else str(c) for c in classes]
    images = {"retrieval_per_class_ap": per_class_ap_chart(labels, ap)}
    top = top_retrievals_figure(zq["z_x"], zg["z_y"], dataset, config)
    if top is not None:
        images["retrieval_top10"] = top
    return metrics, images


def top_retrievals_figure(zq, zg, dataset, config, n_queries=10, k=10):
    """Query sketches (one per test class, first column) with their top-k photos, when
    ``config.data.image_root`` holds the images: ``<image_root>/<data.sketch_subdir>/<path>``
    and ``<image_root>/<data.photo_subdir>/<path>`` for the dataset's 'class/filename'
    paths. Relevant photos get a green frame, others red. None when there are no images."""
    root = config.data.get("image_root", "")
    paths_x = getattr(dataset, "retrieval_paths_x", None)
    if not root or paths_x is None:
        return None
    from PIL import Image  # only needed for this figure

    sketch_dir = paths.path(root) / config.data.get("sketch_subdir", "sketch")
    photo_dir = paths.path(root) / config.data.get("photo_subdir", "photo")
    _, first = np.unique(dataset.retrieval_label_x, return_index=True)
    queries = np.sort(first)[:n_queries]
    dist = np.asarray(
        pairwise_distances(jnp.asarray(zq[queries]), jnp.asarray(zg), config.eval.retrieval_metric)
    )
    ranked = np.argsort(dist, axis=1, kind="stable")[:, :k]
    side = 64

    def load(folder, rel, frame=None):
        path = folder / str(rel)
        if not path.exists():
            raise FileNotFoundError(str(path))
        with path.open("rb") as f:
            img = np.asarray(Image.open(f).convert("RGB").resize((side, side)), np.uint8)
        if frame is not None:
            img = img.copy()
            img[:3], img[-3:], img[:, :3], img[:, -3:] = frame, frame, frame, frame
        return img

    try:
        rows = []
        for q, row in zip(queries, ranked):
            cells = [load(sketch_dir, paths_x[q])]
            for g in row:
                ok = dataset.retrieval_label_y[g] == dataset.retrieval_label_x[q]
                cells.append(
                    load(
                        photo_dir, dataset.retrieval_paths_y[g], (0, 160, 0) if ok else (200, 0, 0)
                    )
                )
            rows.append(np.stack(cells))
    except (FileNotFoundError, OSError) as e:
        logging.warning("No retrieval figure: cannot read image %s (config.data.image_root).", e)
        return None
    return figures.image_grid(np.stack(rows).astype(np.float32) / 127.5 - 1.0)


def per_class_ap_chart(class_names, ap) -> np.ndarray:
    """Horizontal bar chart of the per-class (plain) AP, as a uint8 RGB image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ap = np.nan_to_num(np.asarray(ap, np.float64))
    order = np.argsort(ap)
    fig = Figure(figsize=(5, 0.22 * len(ap) + 1.0), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(np.arange(len(ap)), ap[order])
    ax.set_yticks(np.arange(len(ap)), [class_names[i] for i in order], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"AP (plain); mAP@all = {ap.mean():.3f}")
    ax.set_title("zero-shot retrieval: AP per test class")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# --------------------------------------------------------------------------- figures


def _as_images(arr, dataset, side):
    """Data rows as HWC images for grids, or None for non-image vectors."""
    shape = getattr(dataset, f"{side}_image_shape")
    arr = np.asarray(arr)
    if arr.ndim == 4:
        return arr
    if shape is not None:
        return arr.reshape((arr.shape[0],) + tuple(shape))
    return None


def figure_rows(dataset, rows: int) -> np.ndarray:
    """Test rows for the x→y / y→x / reconstruction grids: the dataset's own choice when it
    has one (``dataset.figure_rows``, e.g. Cars: different cars and azimuths); else the first
    pair of each class first (pairs are stored class by class, so the first rows would all
    show one digit), then the remaining rows in order; just the first rows for unlabelled
    data."""
    if hasattr(dataset, "figure_rows"):
        return np.asarray(dataset.figure_rows(rows))
    test = dataset.test
    n = min(rows, len(test.x))
    first = np.unique(np.asarray(test.label_x), return_index=True)[1]
    if len(first) < 2:
        return np.arange(n)
    rest = np.setdiff1d(np.arange(len(test.x)), first)
    return np.concatenate([np.sort(first), rest])[:n]


def make_figures(inf, dataset, config, gen, key) -> dict[str, np.ndarray]:
    """Grids as uint8 HWC images: joint samples, x→y (rows: input then samples), recons.

    When one side is gray and the other RGB (MNIST–SVHN), gray images are shown as RGB."""
    rows, cols = int(config.eval.grid_rows), int(config.eval.grid_cols)
    test = dataset.test
    out = {}
    xs = _as_images(test.x[:1], dataset, "x")
    ys = _as_images(test.y[:1], dataset, "y")
    if xs is None or ys is None or xs.shape[1:3] != ys.shape[1:3]:
        return out  # vector data: evaluate_and_write draws a scatter plot instead
    channels = {xs.shape[-1], ys.shape[-1]}
    if len(channels) > 1 and channels != {1, 3}:
        return out
    as_images = _as_images
    if channels == {1, 3}:

        def as_images(arr, dataset, side):
            images = _as_images(arr, dataset, side)
            return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images

    pick = figure_rows(dataset, rows)
    if "joint" in gen:
        jx = as_images(gen["joint"][0][: rows * cols // 2], dataset, "x")
        jy = as_images(gen["joint"][1][: rows * cols // 2], dataset, "y")
        pairs = np.stack([jx, jy], 1).reshape((rows, cols) + jx.shape[1:])
        out["joint_samples"] = figures.image_grid(pairs)
    for direction, src, side_in, side_out, fn in (
        ("x2y", test.x, "x", "y", inf.x2y),
        ("y2x", test.y, "y", "x", inf.y2x),
    ):
        if direction not in inf.caps:
            continue
        inputs = src[pick]
        samples = [
            as_images(fn(inputs, jax.random.fold_in(key, c)), dataset, side_out)
            for c in range(cols - 1)
        ]
        grid = np.stack([as_images(inputs, dataset, side_in)] + samples, 1)
        out[f"{direction}_grid"] = figures.image_grid(grid)
    for direction, src, dst, side_out in (
        ("x2y", test.x, test.y, "y"),
        ("y2x", test.y, test.x, "x"),
    ):
        # Translation with the exclusive code of other items (iiae.md §5.4): needs HWC image
        # data (not flattened) of one shape on both sides.
        images = dataset.x_shape == dataset.y_shape and len(dataset.x_shape) == 3
        if not inf.has(f"translate_{direction}_style") or not images:
            continue
        styles = dst[pick[: max(1, cols - 2)]]
        grid = translation_figures.style_grid(
            lambda a, b, d=direction: inf.call(f"translate_{d}_style", a, b),
            src[pick],
            as_images(dst[pick], dataset, side_out),
            as_images(styles, dataset, side_out),
        )
        out[f"{direction}_style_grid"] = figures.image_grid(grid)
    if "reconstruct" in inf.caps:
        rx, ry = inf.reconstruct(test.x[pick], test.y[pick])
        grid = np.stack(
            [
                as_images(test.x[pick], dataset, "x"),
                as_images(rx, dataset, "x"),
                as_images(test.y[pick], dataset, "y"),
                as_images(ry, dataset, "y"),
            ],
            1,
        )
        out["reconstructions"] = figures.image_grid(grid)
    return out


def write_figures(workdir, images) -> None:
    """``<workdir>/figures/<name>.png`` of each image (local or gs://)."""
    fig_dir = paths.path(workdir) / "figures"
    for name, img in images.items():
        figures.save_png(fig_dir / f"{name}.png", img)


def log_image_grids(model, state, dataset, config, writer, step) -> None:
    """TensorBoard image grids during training (cheap: a few batches)."""
    inf = Inference(model, state, config)
    gen = {}
    key = jax.random.PRNGKey(EVAL_SEED + step)
    if "joint" in inf.caps:
        gen["joint"] = inf.joint(config.eval.grid_rows * config.eval.grid_cols // 2, key)
    for name, img in make_figures(inf, dataset, config, gen, key).items():
        writer.image(step, f"samples/{name}", img)


def format_table(metrics: dict[str, float]) -> str:
    width = max((len(k) for k in metrics), default=10)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items())]
    return "\n".join(lines)


def evaluate_and_write(
    model, state, dataset, config, workdir, tensorboard: bool = True
) -> dict[str, float]:
    """Evaluates, writes metrics.json and figures/*.png (process 0), prints the table; with
    ``tensorboard``, also the ``eval/<name>`` scalars into ``workdir/tensorboard``."""
    extras = {}
    metrics, images = evaluate(model, state, dataset, config, extras)
    metrics["train/step"] = float(jax.device_get(state.step))
    if jax.process_index() == 0:
        workdir = paths.path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)  # writes nothing on gs://
        write_figures(workdir, images)
        if dataset.name == "gaussian" and "x2y" in model.capabilities(state):
            inf = Inference(model, state, config)
            n = min(2000, len(dataset.test.x))
            y_gen = inf.x2y(dataset.test.x[:n], jax.random.PRNGKey(EVAL_SEED))
            figures.scatter_plot(
                workdir / "figures" / "x2y_scatter.png",
                dataset.test.x[:n, 0],
                y_gen[:n, 0],
                title="generated y vs x (first coordinate)",
            )
        write_json_atomic(workdir / "metrics.json", metrics)
        if tensorboard:
            write_eval_scalars(workdir, int(metrics["train/step"]), metrics)
        if "samples" in extras:
            write_json_atomic(workdir / "samples.json", extras["samples"])
        log_progress(format_table(metrics))
    return metrics
