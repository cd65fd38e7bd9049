"""IIAE on MNIST-CDCB (iiae.md §5; Table 9 CD→CB 99.7, CB→CD 99.7 Recall@1 %).

  python train.py --config=configs/iiae_mnist_cdcb.py --workdir=runs/iiae_mnist_cdcb
  python train.py --config=configs/iiae_mnist_cdcb.py:64 --workdir=runs/iiae_cdcb64  # CPU smoke

Data: ``data/MNIST-CDCB/{train,test}/00001.png ...`` (README "Image-to-image pairs"): side by
side PNG pairs, x = the colored digit (left half), y = the colored background (right half);
10,000 test pairs. Small native images are kept at their size and upsampled to 256 per batch.

Settings (``run_cross_vae.py``, forced for MNIST-CDCB; iiae.md §2, §5.2): β = 0.2, λ = 1,
l1_weight = 1,000, KL annealing ar = 25,000, batch 8, Adam 2e-4 / 0.5, 1,012,000 steps (the
driver's default); the networks of ``configs/image_pairs.configure_iiae``. Not reproduced:
the reference's checkpoint selection on its `valid` folder (every 5,000 steps after 6
epochs, exclusive retrieval ≤ 1 hit): the final model is evaluated.
"""

from configs import image_pairs


def get_config(arg: str = "256"):
    config = image_pairs.configure_iiae(image_pairs.base_config("mnist_cdcb", arg))
    c = config.iiae
    c.beta = 0.2  # BETA, forced for MNIST-CDCB
    c.recon_weight = 1000.0  # l1_weight
    c.anneal_steps = 25000.0  # ar
    return config
