"""The Variational Wyner model on MNIST-CDCB (x = colored digit, y = colored background): the data, batch
and steps of ``configs/iiae_mnist_cdcb.py``, for a comparison on pair Recall@1 (iiae.md §5.3).

  python train.py --config=configs/mnist_cdcb.py --workdir=runs/mnist_cdcb
  python train.py --config=configs/mnist_cdcb.py:64 --workdir=runs/mnist_cdcb64   # CPU smoke size
  python -m wyner_jax.compare --configs=configs/mnist_cdcb.py,configs/iiae_mnist_cdcb.py \\
      --workdir=runs/compare_mnist_cdcb

Networks and loss weights: ``configs/image_pairs.configure_wyner`` (the conv family with
its depth scaled to the image side and channels capped at 8·base; dz = 128, du = dv = 8;
the MNIST configs' weights, untuned here). Retrieval uses z_x = f_x(x) and z_y = f_y(y);
the Wyner model has no exclusive encoder of x alone in this configuration, so only the
shared-code ``retrieval/R@1_x2y``, ``retrieval/R@1_y2x`` are reported.
"""

from configs import image_pairs


def get_config(arg: str = "256"):
    return image_pairs.configure_wyner(image_pairs.base_config("mnist_cdcb", arg))
