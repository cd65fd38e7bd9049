"""IIAE on jointly Gaussian pairs: the baseline of configs/gaussian.py, same data.

  python train.py --config=configs/iiae_gaussian.py --workdir=runs/iiae_gaussian

IIAE's x→y law is decoder_y(mean of r(z^s|x), z^y ~ N(0, I)) (iiae.md §3.4), so its
gaussian/x2y_* metrics are comparable with the Wyner model's. Networks are the flat (mlp)
ones at the Gaussian config's widths: encoders Dense(128) → 1-d Gaussian codes (shared and
exclusive 1-d, as the Wyner z, u, v), decoders Dense(128); MSE reconstruction.
"""

from configs import gaussian


def get_config():
    config = gaussian.get_config()
    config.model.name = "iiae"
    c = config.iiae
    c.shared_dim = config.data.dim
    c.exclusive_dim = config.data.dim
    c.hidden = (128,)
    c.joint_hidden = (128,)
    c.decoder_hidden = 128
    c.recon_loss = "auto"
    c.decoder_out_act = "none"
    c.lr = 2e-4
    c.b1 = 0.5
    return config
