"""IIAE on pix2pix Facades (iiae.md §5; Table 9 F→L 96.2, L→F 99.1 Recall@1 %).

  python train.py --config=configs/iiae_facades.py --workdir=runs/iiae_facades
  python train.py --config=configs/iiae_facades.py:64 --workdir=runs/iiae_facades64  # CPU smoke

Data: ``data/facades/{train,test}/N.jpg`` from pix2pix (README "Image-to-image pairs"); x =
the facade photo (left half), y = the label map (right half); 400 training pairs, 106 test
pairs.

Settings (``run_cross_vae.py``, forced for Facades; iiae.md §2, §5.2): β = 0.001, λ = 1,
l1_weight = 1,000, KL annealing ar = 25,000, batch 8, Adam 2e-4 / 0.5, 1,012,000 steps (the
driver's default); the networks of ``configs/image_pairs.configure_iiae``. Not reproduced:
the reference's checkpoint selection on pix2pix's val folder (every 100 steps after 299
epochs, exclusive retrieval ≤ 1 hit): the final model is evaluated.
"""

from configs import image_pairs


def get_config(arg: str = "256"):
    config = image_pairs.configure_iiae(image_pairs.base_config("facades", arg))
    c = config.iiae
    c.beta = 0.001  # BETA, forced for Facades
    c.recon_weight = 1000.0  # l1_weight
    c.anneal_steps = 25000.0  # ar
    return config
