"""Restores the latest checkpoint of a run (EMA weights) and evaluates it.

  python eval.py --workdir=/tmp/digits          # with the run's own config.json
  python eval.py --config=configs/digits_add1.py --workdir=/tmp/digits [--config.a.b=...]
  python eval.py --workdir=/tmp/digits --which=best   # the eval.best_metric checkpoint

Writes WORKDIR/metrics.json and WORKDIR/figures/*.png (with --which=best:
WORKDIR/best/metrics.json and WORKDIR/best/figures/) and prints the metrics table.
"""

if __name__ == "__main__":  # first, before JAX starts: see wyner_jax/allocator.py
    from wyner_jax import allocator

    allocator.use_caching_allocator()

from absl import app, flags
from ml_collections import config_flags

from wyner_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config file (configs/*.py); default: the run's own WORKDIR/config.json.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "The training run's directory.")
flags.DEFINE_enum(
    "which",
    "latest",
    ["latest", "best"],
    "The checkpoint to evaluate: the latest, or the best one kept by eval.best_metric.",
)
cli.define_distributed_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cli.run(FLAGS, "eval")


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main, flags_parser=cli.parse_flags)
