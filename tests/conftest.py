"""Test set-up: four fake CPU devices, so the data-parallel paths are exercised on a laptop.

The flag must be set before JAX initialises its backends, hence at import time here.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
