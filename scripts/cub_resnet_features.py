"""Compute the CUB image features the CUB loader reads: 2048-d ResNet-101 average-pool features.

  pip install torch torchvision          # only this script needs them
  python scripts/cub_resnet_features.py --dir data/cub [--device cuda]

Reads the image folders of MMVAE's cub.zip, `<dir>/train/<class>/<image>` and
`<dir>/test/<class>/<image>` (`<dir>/img/{train,test}` also accepted), in torchvision
ImageFolder order (sorted class folders, sorted files; caption i of text_*.txt describes image
⌊i/10⌋ of that order), and writes `<dir>/resnet101_2048/{train,test}.npy` ([N, 2048] float32).

The recipe is the reference's (`CUBImgFt._save_features`, wyner-model.md §5.3): torchvision's
ResNet-101 with ImageNet weights, its final fully connected layer removed, in eval mode;
input `Resize(224)` (shorter side to 224, aspect kept) and `ToTensor()` **without** the
ImageNet mean/std normalisation (`--imagenet-normalize` adds it). Images have different
aspect ratios after Resize(224), so they go through the network one at a time. The ImageNet
weights are downloaded by torchvision on first use (or taken from its cache).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wyner_jax.data.cub import FEATURE_DIM, image_paths  # noqa: E402


def image_root(directory: str, split: str) -> str:
    for root in (os.path.join(directory, split), os.path.join(directory, "img", split)):
        if os.path.isdir(root):
            return root
    raise FileNotFoundError(
        f"No image folder {directory}/{split}/ (or {directory}/img/{split}/): unzip MMVAE's "
        "cub.zip (http://www.robots.ox.ac.uk/~yshi/mmdgm/datasets/cub.zip) into --dir."
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, help="the CUB folder (holds train/ and test/)")
    parser.add_argument("--out", default="", help="output folder; default <dir>/resnet101_2048")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--imagenet-normalize", action="store_true")
    args = parser.parse_args(argv)
    try:
        import torch
        import torchvision
        from PIL import Image
    except ImportError as e:
        raise SystemExit(
            f"This script needs torch and torchvision ({e}); `pip install torch torchvision`."
        )
    weights = torchvision.models.ResNet101_Weights.IMAGENET1K_V1
    net = torchvision.models.resnet101(weights=weights)
    net.fc = torch.nn.Identity()  # the 2048-d average-pool output
    net.eval().to(args.device)
    steps = [torchvision.transforms.Resize(224), torchvision.transforms.ToTensor()]
    if args.imagenet_normalize:
        steps.append(
            torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        )
    transform = torchvision.transforms.Compose(steps)
    out_dir = args.out or os.path.join(args.dir, "resnet101_2048")
    os.makedirs(out_dir, exist_ok=True)
    for split in ("train", "test"):
        root = image_root(args.dir, split)
        paths = image_paths(args.dir, split)
        feats = np.zeros((len(paths), FEATURE_DIM), np.float32)
        with torch.no_grad():
            for i, rel in enumerate(paths):
                image = Image.open(os.path.join(root, rel)).convert("RGB")
                batch = transform(image).unsqueeze(0).to(args.device)
                feats[i] = net(batch)[0].cpu().numpy()
                if i % 500 == 0:
                    print(f"{split}: {i}/{len(paths)}", flush=True)
        target = os.path.join(out_dir, f"{split}.npy")
        np.save(target + ".tmp.npy", feats)
        os.replace(target + ".tmp.npy", target)
        print(f"wrote {target} {feats.shape}")


if __name__ == "__main__":
    main()
