"""One optax builder for every model: the optimiser and its learning-rate schedule."""

from __future__ import annotations

import optax


def learning_rate(o, lr: float, num_steps: int) -> optax.ScalarOrSchedule:
    """``config.optim.schedule``: 'constant' (the reference) or 'linear_tail' (lr until
    ``decay_from``·num_steps, then linearly to 0 at num_steps)."""
    schedule = o.get("schedule", "constant")
    if schedule == "constant":
        return lr
    if schedule == "linear_tail":
        start = int(float(o.decay_from) * num_steps)
        if not 0 <= start < num_steps:
            raise ValueError(
                f"config.optim.decay_from={o.decay_from} must lie in [0, 1): the decay starts "
                f"at decay_from·train.num_steps and must end at num_steps ({num_steps})."
            )
        return optax.linear_schedule(lr, 0.0, num_steps - start, transition_begin=start)
    raise ValueError(
        f"config.optim.schedule must be 'constant' or 'linear_tail', got {schedule!r}."
    )


def make_optimizer(o, lr: float, num_steps: int = 1) -> optax.GradientTransformation:
    """The optimiser of a config block ``o``: Adam (with amsgrad when ``o.amsgrad``) or
    RMSprop, betas and eps from ``o``, optional global-norm clipping, learning rate ``lr``
    under ``o.schedule`` (``learning_rate``).

    Wyner model: ``config.optim`` (Adam-amsgrad, betas (0.5, 0.999), §3.1), one optimiser
    per network group. IIAE: ``config.iiae`` (plain Adam, lr 2e-4, β1 0.5, iiae.md §5.2),
    whose block has no name/amsgrad/clip/schedule fields: they default to Adam, off, off,
    constant.
    """
    lr = learning_rate(o, lr, num_steps)
    name = o.get("name", "adam")
    if name == "adam":
        opt = (
            optax.amsgrad(lr, b1=o.b1, b2=o.b2, eps=o.eps)
            if o.get("amsgrad", False)
            else optax.adam(lr, b1=o.b1, b2=o.b2, eps=o.eps)
        )
    elif name == "rmsprop":
        opt = optax.rmsprop(lr, decay=0.99, eps=o.eps)
    else:
        raise ValueError(f"config.optim.name must be 'adam' or 'rmsprop', got {name!r}.")
    if o.get("clip_grad_norm", -1.0) > 0:
        opt = optax.chain(optax.clip_by_global_norm(o.clip_grad_norm), opt)
    return opt
