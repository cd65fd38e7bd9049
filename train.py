"""Trains a model and evaluates it at the end.

  python train.py --config=configs/digits_add1.py --workdir=/tmp/digits
  python train.py --config=configs/gaussian.py --workdir=/tmp/g --config.data.rho=0.5

Any config field can be overridden with --config.a.b=value. Re-running with the same
--workdir resumes from the latest checkpoint.
"""

if __name__ == "__main__":  # first, before JAX starts: see wyner_jax/allocator.py
    from wyner_jax import allocator

    allocator.use_caching_allocator()

from absl import app, flags
from ml_collections import config_flags

from wyner_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, metrics and figures.")
cli.define_distributed_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cli.run(FLAGS, "train")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=cli.parse_flags)
