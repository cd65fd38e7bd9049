"""The training step compiles once per run (issue 6): every step after the first reuses the
first step's executable, also after a resume from a checkpoint.

Compilations are counted with `jax.monitoring`: JAX records the event
'/jax/core/compile/backend_compile_duration' (module name 'jit(<function>)') around every
XLA compilation of a new program signature, including one served by the persistent
compilation cache that tests/conftest.py enables; a call that reuses a compiled executable
records nothing. The jitted step is taken from the real `trainer.train` by wrapping
`parallel.compile_train_step`, so `_cache_size()` of the very function train.py calls is
checked as well.
"""

import re

import jax
import numpy as np
import pytest

from tests.test_wyner_model import small_config
from wyner_jax import parallel, trainer

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Context manager: records the module name of every backend compilation."""

    def __init__(self):
        self.modules = []

    def _listen(self, event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            self.modules.append(kwargs.get("fun_name"))

    def count(self, fn) -> int:
        """Compilations of the jitted function ``fn`` (JAX names its module jit(<name>))."""
        return self.modules.count(f"jit({fn.__name__})")

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)
        return False


def tiny(num_steps):
    config = small_config()
    # Only the joint matching term (λ_j): still the full D step, G step and EMA, at half the
    # compile time; whether a step recompiles depends on the signature of its state and
    # batch, not on which terms the program computes.
    for k in config.loss.lambdas:
        config.loss.lambdas[k] = 0.0
    config.loss.lambdas.j = 1.0
    config.train.num_steps = num_steps
    config.train.log_every = 2  # the loop reads metrics and flags back at steps 2, 4, ...
    config.train.checkpoint_every = 3
    config.train.image_every = 0
    config.train.evaluate_at_end = False
    return config


def train_counting(config, workdir):
    """Runs `trainer.train` and returns (result, the jitted step it ran, CompileCounter)."""
    steps, compile_train_step = [], parallel.compile_train_step

    def capture(step_fn, mesh):
        steps.append(compile_train_step(step_fn, mesh))
        return steps[-1]

    with CompileCounter() as counter, pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel, "compile_train_step", capture)
        result = trainer.train(config, workdir)
    assert len(steps) == 1, "trainer.train should build its step exactly once"
    return result, steps[0], counter


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("compilation") / "run")
    return workdir, *train_counting(tiny(5), workdir)


def test_train_step_compiles_once_over_five_steps(first_run):
    _, result, step, counter = first_run
    assert int(jax.device_get(result.state.step)) == 5
    assert counter.count(step) == 1, counter.modules
    assert step._cache_size() == 1


def test_resumed_run_compiles_once(first_run):
    # Steps 4..7 start from the checkpoint of step 3: the restored state must have the same
    # shapes, dtypes, weak types and shardings as the state the step itself returns.
    workdir = first_run[0]
    result, step, counter = train_counting(tiny(8), workdir)
    assert int(jax.device_get(result.state.step)) == 8
    assert counter.count(step) == 1, counter.modules
    assert step._cache_size() == 1


def test_counter_sees_a_recompilation(first_run):
    # The counter is not blind: a state whose step is a Python int (a weakly typed scalar,
    # as a hand-built or mis-restored state would have) is a new signature and compiles again.
    _, result, step, _ = first_run
    config = tiny(5)
    batch = parallel.global_batch(
        result.dataset.train_batch(5, config.train.batch_size, config.seed), result.mesh
    )
    with CompileCounter() as counter:
        step(result.state.replace(step=int(jax.device_get(result.state.step))), batch)
    assert counter.count(step) == 1, counter.modules
    assert step._cache_size() == 2


def test_cpu_compile_options_change_buffers_not_results():
    """parallel.CPU_COMPILER_OPTIONS (copy insertion by region analysis) only changes where
    buffers live: three steps with and without them give bit-identical states and metrics,
    and with them no donated parameter or optimiser slot is copied at the start of the step."""
    from tests.test_wyner_model import initial_state
    from wyner_jax import data
    from wyner_jax.models.base import build_model

    options = parallel.cpu_compiler_options()
    if options is None:
        pytest.skip("this jaxlib does not have the XLA:CPU option")
    config = tiny(3)
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    mesh = parallel.make_mesh(jax.devices()[:1])
    rep, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    host_state = initial_state(model, config, dataset)
    batches = [
        parallel.global_batch(dataset.train_batch(i, config.train.batch_size, config.seed), mesh)
        for i in range(3)
    ]

    def run(step):
        state = parallel.replicate(host_state, mesh)
        hlo = step.lower(state, batches[0]).compile().as_text()
        for batch in batches:
            state, metrics = step(state, batch)
        return jax.device_get((state, metrics)), hlo

    with_options, hlo = run(parallel.compile_train_step(model.train_step, mesh))
    plain = jax.jit(
        model.train_step, in_shardings=(rep, sharded), out_shardings=rep, donate_argnums=(0,)
    )
    without, plain_hlo = run(plain)
    jax.tree_util.tree_map(np.testing.assert_array_equal, with_options, without)

    def input_copies(text):  # copies whose operand is an entry parameter (the donated state)
        params = set(re.findall(r"%([\w.\-]+) = \S+ parameter\(\d+\)", text.split("ENTRY")[-1]))
        return sum(m in params for m in re.findall(r" copy\(%([\w.\-]+)\)", text))

    # The check sees the copies the option removes. (Should a jaxlib's default stop copying,
    # this fails: then CPU_COMPILER_OPTIONS may no longer be needed; measure and decide.)
    assert input_copies(plain_hlo) > 0, "XLA:CPU's default copy insertion no longer copies"
    assert input_copies(hlo) == 0


def test_an_option_this_jaxlib_lacks_is_dropped_not_fatal(monkeypatch):
    """Another jaxlib may drop the XLA:CPU option: the step then compiles without it."""
    monkeypatch.setattr(parallel, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": True})
    parallel.cpu_compiler_options.cache_clear()
    try:
        assert parallel.cpu_compiler_options() is None
    finally:
        parallel.cpu_compiler_options.cache_clear()
