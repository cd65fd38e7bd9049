"""The Variational Wyner model on Reed et al.'s rendered 3D cars (x = frontal view, y = the
same car at another azimuth): the data, batch and steps of ``configs/iiae_cars.py``, with a
128-d z (IIAE's shdim), for a comparison on same-car Recall@1 and the azimuth probe of the
shared code (iiae.md §5.1; ``evaluation/view_eval.py``).

  python train.py --config=configs/cars.py --workdir=runs/cars
  python train.py --config=configs/cars.py:64 --workdir=runs/cars64   # CPU smoke size
  python -m wyner_jax.compare --configs=configs/cars.py,configs/iiae_cars.py \\
      --workdir=runs/compare_cars

Networks and loss weights: ``configs/image_pairs.configure_wyner`` (the conv family with its
depth scaled to the image side, channels capped at 8·base; dz = 128, du = dv = 8: the local
code v is where the azimuth should go; the MNIST configs' weights, untuned here). The Wyner
model has no one-sided exclusive encoder in this configuration, so ``probe/azimuth_from_excl``
and the ``azimuth_sweep`` figure are IIAE-only; x→y samples draw v from its prior.
"""

from configs import image_pairs


def get_config(arg: str = "256"):
    return image_pairs.configure_wyner(image_pairs.cars_config(arg))
