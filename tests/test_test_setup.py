"""The test set-up itself: the conftest's XLA flags add to a user's own, and the session
really has the four devices that the data-parallel tests rely on."""

import jax

from tests.conftest import _add_xla_flags


def test_flags_are_added_to_whatever_xla_flags_holds():
    got = _add_xla_flags("--xla_cpu_max_isa=AVX2", xla_force_host_platform_device_count=4)
    assert got == "--xla_cpu_max_isa=AVX2 --xla_force_host_platform_device_count=4"
    assert _add_xla_flags("", a=1, b="x") == "--a=1 --b=x"


def test_a_flag_the_user_set_is_kept():
    flags = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=2"
    assert (
        _add_xla_flags(
            flags, xla_force_host_platform_device_count=4, xla_backend_optimization_level=0
        )
        == flags
    )
    # A longer flag name that starts with the same letters is not the same flag.
    assert _add_xla_flags("--a_b=1", a=2) == "--a_b=1 --a=2"


def test_the_session_has_four_devices():
    # Fails if XLA_FLAGS lost the device count (the multi-device tests would then compare
    # a 1-device run with itself and pass vacuously).
    assert jax.device_count() >= 4, jax.devices()
