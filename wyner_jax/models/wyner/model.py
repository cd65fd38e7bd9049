"""The Variational Wyner model behind the ``PairedModel`` interface (wyner-model.md §3): the
networks of ``generator.py`` and ``discriminator.py``, the objective of ``objective.py``, and
the fused update: one discriminator step, one generator step and the EMA (§3.2), plus the
inference methods the evaluation calls.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wyner_jax import losses, nets, optim
from wyner_jax.models.wyner import objective
from wyner_jax.models.wyner.arch import Arch
from wyner_jax.models.wyner.discriminator import WynerDiscriminator
from wyner_jax.models.wyner.generator import WynerGenerator
from wyner_jax.models.wyner.state import WynerState, ema_decay, ema_update
from wyner_jax.models.wyner.terms import Terms


class WynerModel:
    """The Variational Wyner model behind the ``PairedModel`` interface."""

    name = "wyner"

    def __init__(self, config, dataset):
        self.config = config
        self.arch = Arch.from_config(
            config.model, dataset.x_shape, dataset.y_shape, getattr(dataset, "vocab_size", 0)
        )
        self.terms = Terms.from_lambdas(config.loss.lambdas)
        self.loss_cfg = objective.LossConfig.from_config(
            config.loss, captions=self.arch.sentence is not None
        )
        self.lambdas = self.loss_cfg.lambdas  # term name → λ (config.loss.lambdas)
        noise = config.loss.instance_noise
        self.generator = WynerGenerator(self.arch, self.terms)
        self.discriminator = WynerDiscriminator(
            self.arch, self.terms, sigma_z=noise.z, sigma_uv=noise.uv
        )
        scale_x = dataset.x_std if noise.scale_by_data_std else 1.0
        scale_y = dataset.y_std if noise.scale_by_data_std else 1.0
        self.sigma_x = np.asarray(noise.xy * scale_x, np.float32)
        self.sigma_y = np.asarray(noise.xy * scale_y, np.float32)
        self.noise_in_g_step = bool(noise.in_generator_step)
        steps = int(config.train.num_steps)
        self.gen_opt = optim.make_optimizer(config.optim, config.optim.lr_generator, steps)
        self.disc_opt = optim.make_optimizer(config.optim, config.optim.lr_discriminator, steps)
        self.compute_dtype = nets.check_compute_dtype(config.model.compute_dtype)

    # ------------------------------------------------------------------ randomness
    def sample_prior(self, key, shape):
        if self.arch.prior == "uniform":
            return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
        return jax.random.normal(key, shape)

    def sample_priors(self, key, batch_size: int):
        """Independent draws: z, u, v for the joint model; u_c, v_c for the conditionals."""
        a = self.arch
        dims = dict(z=a.dz, u=a.du, v=a.dv, u_c=a.du, v_c=a.dv)
        keys = jax.random.split(key, len(dims))
        return {n: self.sample_prior(k, (batch_size, d)) for k, (n, d) in zip(keys, dims.items())}

    # ------------------------------------------------------------------ init
    def init(self, rng, batch):
        rng = jnp.asarray(rng)
        k_gen, k_disc, k_prior, k_noise, k_perm, k_enc = jax.random.split(rng, 6)
        x, y = batch["x"], batch["y"]
        prior = self.sample_priors(k_prior, x.shape[0])
        gen_vars = self.generator.init(
            {"params": k_gen, "encoder_noise": k_enc}, x, y, prior, train=True, recon=True
        )
        samples, _ = self.generator.apply(
            gen_vars,
            x,
            y,
            prior,
            train=True,
            recon=False,
            rngs={"encoder_noise": k_enc},
            mutable=["batch_stats"],
        )
        disc_vars = self.discriminator.init(
            {"params": k_disc, "noise": k_noise, "permute": k_perm},
            samples,
            self.sigma_x,
            self.sigma_y,
            train=True,
            noise=True,
            detach_ci_features=True,
        )
        gen_params = gen_vars["params"]
        disc_params = disc_vars["params"]
        return WynerState(
            step=jnp.zeros((), jnp.int32),
            rng=jax.random.fold_in(rng, 1),
            gen_params=gen_params,
            gen_stats=gen_vars.get("batch_stats", {}),
            disc_params=disc_params,
            disc_stats=disc_vars.get("batch_stats", {}),
            gen_opt=self.gen_opt.init(gen_params),
            disc_opt=self.disc_opt.init(disc_params),
            ema_params=gen_params,
        )

    # ------------------------------------------------------------------ losses
    def discriminator_loss(self, logits):
        """``objective.discriminator_loss`` with this model's settings."""
        return objective.discriminator_loss(logits, self.loss_cfg)

    def generator_loss(self, logits, rec):
        """``objective.generator_loss`` with this model's active terms and λ."""
        return objective.generator_loss(logits, rec, self.terms, self.loss_cfg)

    # ------------------------------------------------------------------ the update
    def train_step(self, state: WynerState, batch):
        """D update, then G update on the same batch with fresh draws, then EMA (§3.2).

        The networks compute in ``config.model.compute_dtype``; parameters, optimiser state,
        EMA and the losses are float32."""
        with nets.compute_dtype(self.compute_dtype):
            return self._train_step(state, batch)

    def _generate(self, params, stats, x, y, prior, key, *, recon: bool):
        """The generator's sample sets in training mode; returns (samples, batch-stat update)."""
        return self.generator.apply(
            {"params": params, "batch_stats": stats},
            x,
            y,
            prior,
            train=True,
            recon=recon,
            rngs={"encoder_noise": key},
            mutable=["batch_stats"],
        )

    def _discriminate(self, params, stats, samples, noise_key, perm_key, *, noise, detach):
        """Every estimator's logits on ``samples``; returns (logits, batch-stat update)."""
        return self.discriminator.apply(
            {"params": params, "batch_stats": stats},
            samples,
            self.sigma_x,
            self.sigma_y,
            train=True,
            noise=noise,
            detach_ci_features=detach,
            rngs={"noise": noise_key, "permute": perm_key},
            mutable=["batch_stats"],
        )

    def _train_step(self, state: WynerState, batch):
        x, y = batch["x"], batch["y"]
        n = x.shape[0]
        key = jax.random.fold_in(state.rng, state.step)
        k_d_prior, k_d_noise, k_d_perm, k_d_enc, k_g_prior, k_g_noise, k_g_perm, k_g_enc = (
            jax.random.split(key, 8)
        )

        # Discriminator step: generator outputs are constants.
        prior = self.sample_priors(k_d_prior, n)
        samples, gen_upd = self._generate(
            state.gen_params, state.gen_stats, x, y, prior, k_d_enc, recon=False
        )
        samples = jax.lax.stop_gradient(samples)
        gen_stats = gen_upd["batch_stats"]

        def disc_loss_fn(disc_params):
            logits, upd = self._discriminate(
                disc_params, state.disc_stats, samples, k_d_noise, k_d_perm, noise=True, detach=True
            )
            total, terms = self.discriminator_loss(logits)
            return total, (terms, upd["batch_stats"])

        (_, (d_terms, disc_stats)), d_grads = jax.value_and_grad(disc_loss_fn, has_aux=True)(
            state.disc_params
        )
        d_updates, disc_opt = self.disc_opt.update(d_grads, state.disc_opt, state.disc_params)
        disc_params = optax.apply_updates(state.disc_params, d_updates)

        # Generator step: the discriminator is frozen but differentiated through.
        prior = self.sample_priors(k_g_prior, n)

        def gen_loss_fn(gen_params):
            s, g_upd = self._generate(gen_params, gen_stats, x, y, prior, k_g_enc, recon=True)
            logits, d_upd = self._discriminate(
                disc_params,
                disc_stats,
                s,
                k_g_noise,
                k_g_perm,
                noise=self.noise_in_g_step,
                detach=False,
            )
            total, terms = self.generator_loss(logits, s.get("rec", {}))
            return total, (terms, g_upd["batch_stats"], d_upd["batch_stats"])

        (_, (g_terms, gen_stats, disc_stats)), g_grads = jax.value_and_grad(
            gen_loss_fn, has_aux=True
        )(state.gen_params)
        g_updates, gen_opt = self.gen_opt.update(g_grads, state.gen_opt, state.gen_params)
        gen_params = optax.apply_updates(state.gen_params, g_updates)

        decay = ema_decay(self.config.ema.decay, state.step + 1, self.config.ema.warmup)
        ema_params = ema_update(state.ema_params, gen_params, decay)

        new_state = state.replace(
            step=state.step + 1,
            gen_params=gen_params,
            gen_stats=gen_stats,
            disc_params=disc_params,
            disc_stats=disc_stats,
            gen_opt=gen_opt,
            disc_opt=disc_opt,
            ema_params=ema_params,
        )
        metrics = {**d_terms, **g_terms}
        return new_state, metrics

    # ------------------------------------------------------------------ inference
    def eval_variables(self, state: WynerState):
        return {"params": state.ema_params, "batch_stats": state.gen_stats}

    def _apply(self, variables, *args, method, key=None):
        train = bool(self.config.model.bn_batch_stats_at_eval)
        # Encoder noise (when configured) stays on at evaluation, as in the reference; without
        # a key (embeddings, reconstructions) a fixed one keeps evaluation deterministic.
        key = jax.random.PRNGKey(0) if key is None else jax.random.fold_in(key, 1)
        # In "train" mode BatchNorm and spectral norm write updated statistics; evaluation
        # discards them so it never changes the training state.
        with nets.compute_dtype(self.compute_dtype):
            out, _ = self.generator.apply(
                variables,
                *args,
                train=train,
                method=method,
                rngs={"encoder_noise": key},
                mutable=["batch_stats"],
            )
        return nets.float32(out)

    def embed(self, variables, x, y):
        return self._apply(variables, x, y, method=WynerGenerator.embed)

    def translate_x2y(self, variables, x, key):
        v = self.sample_prior(key, (x.shape[0], self.arch.dv))
        return self._apply(variables, x, v, method=WynerGenerator.x2y, key=key)

    def translate_y2x(self, variables, y, key):
        u = self.sample_prior(key, (y.shape[0], self.arch.du))
        return self._apply(variables, y, u, method=WynerGenerator.y2x, key=key)

    def sample_joint(self, variables, key, n):
        kz, ku, kv = jax.random.split(key, 3)
        a = self.arch
        return self._apply(
            variables,
            self.sample_prior(kz, (n, a.dz)),
            self.sample_prior(ku, (n, a.du)),
            self.sample_prior(kv, (n, a.dv)),
            method=WynerGenerator.joint,
        )

    def reconstruct(self, variables, x, y):
        return self._apply(variables, x, y, method=WynerGenerator.reconstruct)

    def ci_estimate(self, state: WynerState, x, y, key):
        """The trained CI estimator's value E_q[T_var_ci] on (x, y): the generator's
        ``gen/var_ci`` term (≈ I(X', Y'; Z'), the CI under instance noise, §2.3) averaged
        over the rows given instead of one training batch.

        It reads the networks the estimator was trained against: the raw (not EMA) generator
        and the discriminator, as in a D step (batch statistics, instance noise on, fresh
        encoder noise); nothing is written back.
        """
        if "var_ci" not in self.terms.ci:
            raise ValueError(
                "This run has no CI estimator (config.loss.lambdas.var_ci < 0 removes it)."
            )
        k_prior, k_enc, k_noise, k_perm = jax.random.split(key, 4)
        prior = self.sample_priors(k_prior, x.shape[0])
        with nets.compute_dtype(self.compute_dtype):
            samples, _ = self._generate(
                state.gen_params, state.gen_stats, x, y, prior, k_enc, recon=False
            )
            logits, _ = self._discriminate(
                state.disc_params,
                state.disc_stats,
                samples,
                k_noise,
                k_perm,
                noise=True,
                detach=True,
            )
        return losses.ci_penalty(nets.float32(logits["var_ci"][0]))

    def capabilities(self, state) -> set[str]:
        """Which inference methods this trained configuration supports (its networks exist)."""
        have = set(state.gen_params)
        caps = {"embed"}
        if {"f_x", "g_y"} <= have:
            caps.add("x2y")
        if {"f_y", "g_x"} <= have:
            caps.add("y2x")
        if {"g_x", "g_y"} <= have:
            caps |= {"joint", "reconstruct"}
        return caps
