"""IIAE behind the ``PairedModel`` interface: the architecture chosen by the config, the
training state, one Adam step on ``objective.iiae_loss`` and the inference methods.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from wyner_jax import nets, optim
from wyner_jax.models.iiae.common import BN_SCALE_STDDEV
from wyner_jax.models.iiae.flat import Arch
from wyner_jax.models.iiae.flat_fc import FlatArch
from wyner_jax.models.iiae.networks import IIAENetworks
from wyner_jax.models.iiae.objective import LossConfig, iiae_loss
from wyner_jax.models.iiae.sentence import SentenceIIAEArch
from wyner_jax.models.iiae.spatial import SpatialArch

# config.iiae.shared_code → the architecture of the image/feature networks (§1.2–§1.3).
SHARED_CODES = {
    "flat": Arch,  # a vector z^s: the ZS MLPs, or small-image convs (flat.py)
    "spatial": SpatialArch,  # the 256-px networks' 8×8×C z^s (spatial.py)
    "flat_fc": FlatArch,  # the Cars conv + FC networks (flat_fc.py)
}


@struct.dataclass
class IIAEState:
    """Everything an IIAE training run changes (its field names are the checkpoint layout)."""

    step: jax.Array
    rng: jax.Array  # per-step keys are fold_in(rng, step)
    params: Any
    batch_stats: Any  # BatchNorm running averages (used at evaluation)
    opt_state: Any


def resample_bn_scales(params, key):
    """BatchNorm scales γ ~ N(1, 0.02) as the reference's ``batchnorm`` (Flax starts at 1)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, leaf), k in zip(leaves, keys):
        names = [getattr(p, "key", "") for p in path]
        is_bn_scale = names[-1] == "scale" and len(names) > 1 and "BatchNorm" in names[-2]
        out.append(
            1.0 + BN_SCALE_STDDEV * jax.random.normal(k, leaf.shape, leaf.dtype)
            if is_bn_scale
            else leaf
        )
    return jax.tree_util.tree_unflatten(treedef, out)


def _is_image(dataset, side: str) -> bool:
    return len(getattr(dataset, f"{side}_shape")) == 3 or (
        getattr(dataset, f"{side}_image_shape", None) is not None
    )


def resolve_output_activations(setting: str, dataset) -> tuple[str, str]:
    """'auto': tanh for image data in [−1, 1] (the image reference), linear for feature
    vectors (the ZS reference); or one of 'tanh', 'none' for both sides."""
    if setting == "auto":
        return tuple("tanh" if _is_image(dataset, s) else "none" for s in ("x", "y"))
    if setting not in ("tanh", "none"):
        raise ValueError(
            f"config.iiae.decoder_out_act must be 'auto', 'tanh' or 'none', got " f"{setting!r}."
        )
    return setting, setting


def build_arch(config, dataset) -> Arch:
    """The ``Arch`` of ``config.iiae.shared_code`` and ``config.model.family`` for the data;
    captions (family 'sentence', ``sentence.py``) take the dataset's vocabulary."""
    c, family = config.iiae, config.model.family
    shared_code = c.get("shared_code", "flat")
    if shared_code not in SHARED_CODES:
        raise ValueError(
            "config.iiae.shared_code must be 'flat' (small images), 'spatial' (the 256-px "
            f"conv networks) or 'flat_fc' (the Cars networks), got {shared_code!r}."
        )
    args = (
        family,
        c,
        dataset.x_shape,
        dataset.y_shape,
        resolve_output_activations(c.decoder_out_act, dataset),
    )
    if family == "sentence":
        return SentenceIIAEArch.from_config(
            *args,
            sentence_config=config.model.sentence,
            vocab_size=getattr(dataset, "vocab_size", 0),
        )
    return SHARED_CODES[shared_code].from_config(*args)


class IIAEModel:
    """The Interaction Information Auto-Encoder behind the ``PairedModel`` interface."""

    name = "iiae"

    def __init__(self, config, dataset):
        self.config = config
        c = config.iiae
        family = config.model.family
        self.arch = build_arch(config, dataset)
        self.loss_cfg = LossConfig.from_config(c, family)
        self.net = IIAENetworks(self.arch, float(c.logvar_max))
        # Generated captions are returned as argmax token ids; other y as they are.
        self.y_output = self.arch.y_output
        # One Adam over every network: lr 2e-4, β1 0.5, β2 0.999, eps 1e-8 (§5.2, §8).
        self.optimizer = optim.make_optimizer(c, c.lr)
        self.bn_batch_stats_at_eval = bool(c.bn_batch_stats_at_eval)
        self.compute_dtype = nets.check_compute_dtype(config.model.compute_dtype)

    # ------------------------------------------------------------------ randomness
    def sample_eps(self, key, n: int) -> dict[str, jax.Array]:
        """Standard-normal ε for the reparameterised samples of q_x, q_y, q_s."""
        shapes = {
            "q_x": (self.arch.exclusive_dim,),
            "q_y": (self.arch.exclusive_dim,),
            "q_s": self.arch.shared_shape,
        }
        keys = jax.random.split(key, len(shapes))
        return {k: jax.random.normal(kk, (n,) + d) for kk, (k, d) in zip(keys, shapes.items())}

    # ------------------------------------------------------------------ init
    def init(self, rng, batch) -> IIAEState:
        rng = jnp.asarray(rng)
        k_params, k_dropout, k_eps, k_bn = jax.random.split(rng, 4)
        x, y = batch["x"], batch["y"]
        variables = self.net.init(
            {"params": k_params, "dropout": k_dropout},
            x,
            y,
            self.sample_eps(k_eps, x.shape[0]),
            train=True,
            dropout=True,
        )
        params = resample_bn_scales(variables["params"], k_bn)
        return IIAEState(
            step=jnp.zeros((), jnp.int32),
            rng=jax.random.fold_in(rng, 1),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=self.optimizer.init(params),
        )

    # ------------------------------------------------------------------ the update
    def loss_and_stats(self, params, batch_stats, batch, step, key):
        """L (§2) on one batch, with its terms and the updated BatchNorm statistics."""
        x, y = batch["x"], batch["y"]
        k_eps, k_dropout = jax.random.split(key)
        out, upd = self.net.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            y,
            self.sample_eps(k_eps, x.shape[0]),
            train=True,
            dropout=True,
            rngs={"dropout": k_dropout},
            mutable=["batch_stats"],
        )
        total, terms = iiae_loss(nets.float32(out), x, y, step, self.loss_cfg)
        return total, (terms, upd["batch_stats"])

    def train_step(self, state: IIAEState, batch):
        """One Adam step on L; BatchNorm running averages take this batch's statistics.

        The networks compute in ``config.model.compute_dtype``; parameters and L are float32."""
        with nets.compute_dtype(self.compute_dtype):
            return self._train_step(state, batch)

    def _train_step(self, state: IIAEState, batch):
        key = jax.random.fold_in(state.rng, state.step)
        (_, (terms, batch_stats)), grads = jax.value_and_grad(self.loss_and_stats, has_aux=True)(
            state.params, state.batch_stats, batch, state.step, key
        )
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
        )
        return new_state, {f"loss/{k}": v for k, v in terms.items()}

    # ------------------------------------------------------------------ inference
    def eval_variables(self, state: IIAEState):
        """The trained weights themselves: the reference keeps no EMA."""
        return {"params": state.params, "batch_stats": state.batch_stats}

    def _apply(self, variables, *args, method):
        with nets.compute_dtype(self.compute_dtype):
            if self.bn_batch_stats_at_eval:
                # Batch statistics write new running averages; evaluation discards them so it
                # never changes the training state.
                out, _ = self.net.apply(
                    variables, *args, train=True, method=method, mutable=["batch_stats"]
                )
            else:
                out = self.net.apply(variables, *args, train=False, method=method)
        return nets.float32(out)

    def embed(self, variables, x, y):
        return self._apply(variables, x, y, method=IIAENetworks.embed)

    def translate_x2y(self, variables, x, key):
        z_y = jax.random.normal(key, (x.shape[0], self.arch.exclusive_dim))
        return self.y_output(self._apply(variables, x, z_y, method=IIAENetworks.x2y))

    def translate_y2x(self, variables, y, key):
        z_x = jax.random.normal(key, (y.shape[0], self.arch.exclusive_dim))
        return self._apply(variables, y, z_x, method=IIAENetworks.y2x)

    def sample_joint(self, variables, key, n):
        k_s, k_x, k_y = jax.random.split(key, 3)
        a = self.arch
        x, y = self._apply(
            variables,
            jax.random.normal(k_s, (n,) + a.shared_shape),
            jax.random.normal(k_x, (n, a.exclusive_dim)),
            jax.random.normal(k_y, (n, a.exclusive_dim)),
            method=IIAENetworks.joint,
        )
        return x, self.y_output(y)

    def reconstruct(self, variables, x, y):
        rx, ry = self._apply(variables, x, y, method=IIAENetworks.reconstruct)
        return rx, self.y_output(ry)

    # Optional inference methods (the evaluation uses them when a model has them).
    def embed_exclusive(self, variables, x, y):
        """{'e_x', 'e_y'}: the exclusive codes of x alone and y alone."""
        return self._apply(variables, x, y, method=IIAENetworks.exclusive)

    def translate_x2y_style(self, variables, x, y_style):
        """y with x's shared content and the exclusive code of y_style (row by row)."""
        return self._apply(variables, x, y_style, method=IIAENetworks.x2y_style)

    def translate_y2x_style(self, variables, y, x_style):
        return self._apply(variables, y, x_style, method=IIAENetworks.y2x_style)

    def capabilities(self, state) -> set[str]:
        """Every IIAE network always exists, so every inference method is available."""
        del state
        return {"embed", "x2y", "y2x", "joint", "reconstruct"}
