"""MNIST–SVHN add-1 (wyner-model.md §4.1, §5.2, §6.2–§6.4, §7.8) with the Variational Wyner
model.

  python train.py --config=configs/mnist_svhn.py --workdir=runs/mnist_svhn
  python eval.py  --config=configs/mnist_svhn.py --workdir=runs/mnist_svhn

x = an MNIST digit l (1×32×32, resized 28→32), y = an SVHN crop of digit (l + 1) mod 10
(3×32×32), both in [−1, 1]. This is the reference's add-1 MNIST–SVHN, not MMVAE's
same-digit one (results-anchors.md warns the numbers are not comparable). Train pairs: MNIST
train × SVHN **extra**, ≤ 10,000 per class, 4 random pairings (the reference's --dm 4):
240,000 pairs; test pairs: MNIST test × SVHN test, ≤ 1,000 per class, 4 pairings: 39,144.
Needs the TFDS datasets `mnist` and `svhn_cropped` prepared once in array_record format
(README "MNIST-Add1 and MNIST–SVHN"):

  pip install -e '.[tfds-prepare]'
  tfds build mnist svhn_cropped --data_dir=$TFDS_DATA_DIR --file_format=array_record

Networks and settings: as ``configs/mnist_add1.py`` (the §4.1 family with c_x = 1, c_y = 3;
the joint encoder and D_F see the 4-channel concatenation), the same loss weights for the
same reasons (the reference ships none), and the reference's 100 epochs:
num_steps = 100 · 240,000 / 64 = 375,000.

Evaluation: the x classifier is trained on MNIST train (32 px), the y classifier on SVHN
train (73,257 images; the training pairs use `extra`); coherence/joint uses the add-1 rule
on 16,384 prior samples, as the reference's err_j for both datasets.
"""

from configs import mnist_add1

PAIRS = 240_000


def get_config():
    config = mnist_add1.get_config()
    config.data.name = "mnist_svhn"
    config.data.multiplier = 4  # the reference's --dm 4 for MNIST-SVHN
    config.data.svhn_train_split = "extra"
    config.train.num_steps = mnist_add1.EPOCHS * (PAIRS // 64)
    # SVHN is the harder instrument: more steps (~4.4 epochs of SVHN train).
    config.eval.classifier_steps = 5000
    return config
