"""IIAE on pix2pix Maps (iiae.md §5; Table 9 S→M 96.6, M→S 97.3 Recall@1 %).

  python train.py --config=configs/iiae_maps.py --workdir=runs/iiae_maps
  python train.py --config=configs/iiae_maps.py:64 --workdir=runs/iiae_maps64   # CPU smoke size

Data: ``data/maps/{train,val}/N.jpg`` from pix2pix (README "Image-to-image pairs"); x = the
satellite photo (left half), y = the map (right half); 1,096 training pairs; the test set is
pix2pix's val folder (1,098 pairs), which IIAE's copy calls test
(``--config.data.test_split=test`` for that layout).

Settings (``run_cross_vae.py``, forced for Maps; iiae.md §2, §5.2): β = 0.02 (the image
default), λ = 1, l1_weight = 20,000 (Maps only; 1,000 elsewhere), KL annealing ar = 25,000,
batch 8, Adam 2e-4 / 0.5, 1,012,000 steps (the driver's default); the networks of
``configs/image_pairs.configure_iiae``. Not reproduced: the reference's checkpoint selection
on its validation folder (the first 800 *training* images; Recall@1 every 137 steps after
399 epochs, kept only while exclusive retrieval has ≤ 1 hit): the final model is evaluated.
"""

from configs import image_pairs


def get_config(arg: str = "256"):
    config = image_pairs.configure_iiae(image_pairs.base_config("maps", arg))
    c = config.iiae
    c.beta = 0.02  # BETA
    c.recon_weight = 20000.0  # l1_weight, forced for Maps
    c.anneal_steps = 25000.0  # ar
    return config
