"""IIAE on Reed et al.'s rendered 3D cars: frontal ↔ rotated view translation with a 128-d
shared code (iiae.md §1.3 "flat" networks, §2 Cars row, §5.1, §5.4).

  python train.py --config=configs/iiae_cars.py --workdir=runs/iiae_cars
  python train.py --config=configs/iiae_cars.py:64 --workdir=runs/iiae_cars64   # CPU smoke size

Data: ``data/cars/car_XXX_mesh.mat`` (README "Cars"); x = a car's azimuth-0 view, y = the
same car at one of the other 23 azimuths and the same elevation; ids 1–191 train (16,192
pairs), 192–199 test.

Settings (``run_cross_vae.py``, forced for Cars; iiae.md §2, §5.2): β = 0.02, λ = 1,
l1_weight = 1,000, KL annealing ar = 100 (Cars only; 25,000 elsewhere), batch 8, Adam 2e-4 /
0.5, 1,012,000 steps = 500 epochs, no validation (the reference saves every 50 epochs and
tests the last checkpoint). Networks (``models/iiae/flat_fc.py``): conv trunks + FC heads with a
128-d z^s (shdim) and 8-d exclusive codes (exdim), widths 32·2^i (neef = nsef = 32), FC
hidden 256, FC decoder to 8×8×512 then the transposed-conv stack (ndf = 64), dropout 0.5.

Evaluation (beyond the reference, which reports none on Cars; ``evaluation/view_eval.py``):
``retrieval/R@1_x2y`` / ``R@1_y2x`` (same car across views from the r-means),
``probe/azimuth_from_excl`` (higher is better) and ``probe/azimuth_from_shared`` (the leakage
check, lower is better); figures ``azimuth_sweep`` (a frontal view to every azimuth) and
``x2y_style_grid`` (azimuths carried from one car to another).
"""

from configs import image_pairs


def get_config(arg: str = "256"):
    config = image_pairs.configure_iiae(image_pairs.cars_config(arg))
    c = config.iiae
    c.shared_code = "flat_fc"  # the *_flat encoders and the FC decoder branch
    c.shared_dim = 128  # shdim
    c.conv_hidden = (256,)  # r-heads: Dense(256) → BN+LReLU → Dense(2·128)
    c.joint_hidden = (256,)  # q(z^s|x,y): the same on the two flattened trunks
    c.beta = 0.02  # BETA (the image default)
    c.recon_weight = 1000.0  # l1_weight
    c.anneal_steps = 100.0  # ar, forced for Cars
    return config
