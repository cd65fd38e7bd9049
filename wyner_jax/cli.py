"""What train.py and eval.py share: distributed start-up flags and friendly errors."""

from __future__ import annotations

import sys

from absl import flags, logging

from wyner_jax import parallel

# Errors that mean "the user asked for something that cannot work": printed as one
# paragraph, without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, PermissionError)


def define_distributed_flags() -> None:
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "host:port of process 0 for multi-process runs (else JAX's env vars).",
    )
    flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
    flags.DEFINE_integer("process_id", None, "Index of this process in a multi-process run.")


def run(FLAGS, mode: str) -> None:
    """Starts JAX (multi-process when asked), then trains or evaluates; exits 1 with a
    one-paragraph message on a user error."""
    if not FLAGS["verbosity"].present:
        # Orbax and JAX log every checkpoint at INFO; keep the console to our progress lines.
        logging.set_verbosity(logging.WARNING)
    try:
        parallel.maybe_initialize_distributed(
            FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
        )
        from wyner_jax import trainer  # after distributed init: it touches jax.devices()

        config = FLAGS.config
        if mode == "train":
            trainer.train_and_evaluate(config, FLAGS.workdir)
        else:
            trainer.evaluate_checkpoint(config, FLAGS.workdir)
    except USER_ERRORS as e:
        logging.error("%s: %s", type(e).__name__, e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
