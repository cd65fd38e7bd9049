"""Paired datasets: `build(config.data)` returns a `PairedDataset`.

To add a dataset, write a loader returning a `PairedDataset` whose keyword arguments are
the config keys, and add one line to `REGISTRY`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from wyner_jax import paths
from wyner_jax.data.base import Domain, PairedArrays, PairedDataset, pair_by_label
from wyner_jax.data.cars import CarViewsDataset, load_cars
from wyner_jax.data.cub import CaptionDataset, load_cub
from wyner_jax.data.digits import load_digits_add1
from wyner_jax.data.gaussian import load_gaussian
from wyner_jax.data.mnist import load_mnist_add1, load_mnist_svhn
from wyner_jax.data.pix2pix import load_facades, load_maps, load_mnist_cdcb
from wyner_jax.data.sketchy import SketchyDataset, load_sketchy

REGISTRY: dict[str, Callable[..., PairedDataset]] = {
    "cars": load_cars,
    "cub": load_cub,
    "digits_add1": load_digits_add1,
    "gaussian": load_gaussian,
    "mnist_add1": load_mnist_add1,
    "mnist_svhn": load_mnist_svhn,
    "maps": load_maps,
    "facades": load_facades,
    "mnist_cdcb": load_mnist_cdcb,
    "sketchy": load_sketchy,
}

# Loader arguments that name a folder: local, or a URL that `paths.check_supported` accepts.
FOLDER_KEYS = ("dir", "tfds_dir", "features_dir", "cache_dir")


def _has(cfg: Any, key: str) -> bool:
    try:
        return key in cfg
    except TypeError:
        return hasattr(cfg, key)


def _get(cfg: Any, key: str) -> Any:
    return cfg[key] if hasattr(cfg, "__getitem__") else getattr(cfg, key)


def build(data_config: Any) -> PairedDataset:
    """Build the paired dataset named by `data_config.name`.

    `data_config` is an ml_collections.ConfigDict (or a dict). Keys that match the
    loader's keyword arguments are passed on; a key the loader takes but the config
    lacks gets the loader's default; keys the loader does not take are ignored (they
    may configure other parts, e.g. batching). A folder (`FOLDER_KEYS`) on a URL scheme
    other than gs:// is refused with the flag's name.
    """
    if not _has(data_config, "name"):
        raise ValueError(
            f"data config has no 'name'; set config.data.name to one of {sorted(REGISTRY)}."
        )
    name = _get(data_config, "name")
    if name not in REGISTRY:
        raise ValueError(f"Unknown dataset '{name}'; known datasets are {sorted(REGISTRY)}.")
    loader = REGISTRY[name]
    kwargs = {}
    for param in inspect.signature(loader).parameters.values():
        if _has(data_config, param.name):
            kwargs[param.name] = _get(data_config, param.name)
        elif param.default is inspect.Parameter.empty:
            raise ValueError(
                f"Dataset '{name}' needs config key data.{param.name}; add it to the data config."
            )
    for key in FOLDER_KEYS:
        if kwargs.get(key):
            paths.check_supported(kwargs[key], flag=f"--config.data.{key}")
    return loader(**kwargs)


__all__ = [
    "REGISTRY",
    "CaptionDataset",
    "CarViewsDataset",
    "Domain",
    "PairedArrays",
    "PairedDataset",
    "SketchyDataset",
    "build",
    "load_cars",
    "load_cub",
    "load_digits_add1",
    "load_gaussian",
    "load_mnist_add1",
    "load_mnist_svhn",
    "load_sketchy",
    "pair_by_label",
]
