"""IIAE on MNIST–SVHN add-1: the baseline with the Wyner MNIST–SVHN run's data and budget.

  python train.py --config=configs/iiae_mnist_svhn.py --workdir=runs/iiae_mnist_svhn
  python -m wyner_jax.compare --configs=configs/mnist_svhn.py,configs/iiae_mnist_svhn.py \
      --workdir=runs/compare_mnist_svhn

It starts from ``configs/mnist_svhn.py`` (TFDS `mnist` and `svhn_cropped`, 240,000 train
pairs from SVHN `extra`, batch 64, 375,000 steps, the same evaluation) and sets the IIAE
block of ``configs/iiae_mnist_add1.py``, with the same reasons; the only difference is that
the y decoder emits 3 channels. recon_weight = 300 applies to the mean L1 of each side, so
per value the SVHN side weighs a third of the MNIST side (3,072 vs 1,024 values); untuned.
"""

from configs import iiae_mnist_add1, mnist_svhn


def get_config():
    return iiae_mnist_add1.configure_iiae(mnist_svhn.get_config())
