"""The Variational Wyner model on pix2pix Facades (x = facade photo, y = label map): the data, batch
and steps of ``configs/iiae_facades.py``, for a comparison on pair Recall@1 (iiae.md §5.3).

  python train.py --config=configs/facades.py --workdir=runs/facades
  python train.py --config=configs/facades.py:64 --workdir=runs/facades64   # CPU smoke size
  python -m wyner_jax.compare --configs=configs/facades.py,configs/iiae_facades.py \\
      --workdir=runs/compare_facades

Networks and loss weights: ``configs/image_pairs.configure_wyner`` (the conv family with
its depth scaled to the image side and channels capped at 8·base; dz = 128, du = dv = 8;
the MNIST configs' weights, untuned here). Retrieval uses z_x = f_x(x) and z_y = f_y(y);
the Wyner model has no exclusive encoder of x alone in this configuration, so only the
shared-code ``retrieval/R@1_x2y``, ``retrieval/R@1_y2x`` are reported.
"""

from configs import image_pairs


def get_config(arg: str = "256"):
    return image_pairs.configure_wyner(image_pairs.base_config("facades", arg))
