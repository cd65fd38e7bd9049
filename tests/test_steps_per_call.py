"""Several training steps per compiled call (`config.train.steps_per_call`, issue 6): the loop
runs K steps in one `lax.scan` and must train exactly as K one-step calls do, stop at the
right step, and still log, checkpoint and stop between calls."""

import json

import chex
import jax
import numpy as np
import pytest

from tests.test_compilation import CompileCounter, tiny as tiny_j
from tests.test_faults import PoisonedDataset
from wyner_jax import data, faults, parallel, trainer


def tiny(num_steps, steps_per_call, **train):
    config = tiny_j(num_steps)  # only λ_j: the full D step, G step and EMA at half the compile
    config.train.steps_per_call = steps_per_call
    for k, v in train.items():
        config.train[k] = v
    return config


def brute_force_calls(start, total, k, intervals):
    """Step by step: a call grows until it has k steps, reaches a multiple of one of the
    intervals (a step the loop must look at) or the end."""
    calls, first, n = [], start, 0
    for step in range(start, total):
        n += 1
        done = step + 1
        if n == k or done == total or any(done % e == 0 for e in intervals):
            calls.append((first, n))
            first, n = done, 0
    return calls


@pytest.mark.parametrize(
    "start,total,k,log,ckpt,image",
    [
        (0, 10, 4, 4, 8, 0),  # aligned: full calls and a short last one
        (3, 17, 4, 4, 8, 0),  # a resume off the grid: short calls up to the next multiple
        (0, 30, 4, 6, 9, 5),  # intervals that are not multiples of k
        (0, 7, 1, 2, 3, 0),  # k = 1: one step per call
        (0, 5, 16, 100, 100, 0),  # k larger than the run
    ],
)
def test_step_calls_match_a_step_by_step_schedule(start, total, k, log, ckpt, image):
    config = tiny(total, k, log_every=log, checkpoint_every=ckpt, image_every=image)
    calls = trainer.step_calls(start, total, config)
    assert calls == brute_force_calls(start, total, k, [e for e in (log, ckpt, image) if e])
    assert sum(n for _, n in calls) == total - start and max(n for _, n in calls) <= k


def test_global_batches_stack_each_steps_global_batch():
    mesh = parallel.make_mesh()
    rng = np.random.default_rng(0)
    local = [{"x": rng.normal(size=(8, 3)).astype(np.float32)} for _ in range(3)]
    stacked = parallel.global_batches(local, mesh)
    assert stacked["x"].shape == (3, 8, 3)
    assert stacked["x"].sharding.spec == parallel.batches_sharded(mesh).spec
    for i, b in enumerate(local):
        np.testing.assert_array_equal(
            np.asarray(stacked["x"][i]), np.asarray(parallel.global_batch(b, mesh)["x"])
        )


def train_counting(config, workdir, dataset=None):
    """`trainer.train`, counting the compilations of its one-step and several-step programs."""
    built = {}
    one, many = parallel.compile_train_step, parallel.compile_train_steps

    def capture(name, make):
        def compile_(step_fn, mesh):
            built[name] = make(step_fn, mesh)
            return built[name]

        return compile_

    with CompileCounter() as counter, pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel, "compile_train_step", capture("one", one))
        mp.setattr(parallel, "compile_train_steps", capture("many", many))
        result = trainer.train(config, workdir, dataset=dataset)
    counts = {name: counter.count(fn) for name, fn in built.items()}
    return result, counts


def test_three_steps_per_call_train_exactly_as_one_step_calls(tmp_path):
    # 7 steps, log every 3, checkpoint every 6, k = 3: calls (0,3) (3,3) (6,1).
    one, _ = train_counting(tiny(7, 1, log_every=3, checkpoint_every=6), str(tmp_path / "k1"))
    many, counts = train_counting(tiny(7, 3, log_every=3, checkpoint_every=6), str(tmp_path / "k3"))
    assert int(jax.device_get(many.state.step)) == 7
    # The scan runs the very step function; XLA compiles its body to the same arithmetic.
    chex.assert_trees_all_equal(jax.device_get(one.state), jax.device_get(many.state))
    logs = [
        [json.loads(l) for l in open(tmp_path / k / "train_metrics.jsonl")] for k in ("k1", "k3")
    ]
    assert [r["step"] for r in logs[1]] == [3, 6, 7]
    assert logs[0] == logs[1]  # the same values, logged at the same steps
    for k in ("k1", "k3"):
        assert sorted(p.name for p in (tmp_path / k / "checkpoints").iterdir()) == ["6", "7"]
    # One compilation of the 3-step program; the last, 1-step call compiles the one-step one.
    assert counts == {"one": 1, "many": 1}


def test_a_nan_inside_a_call_is_reported_at_its_own_step(tmp_path):
    config = tiny(8, 4, log_every=4, checkpoint_every=4)
    dataset = PoisonedDataset(data.build(config.data), bad_step=5)  # the 6th update
    with pytest.raises(FloatingPointError, match=r"step 6: .*gen/"):
        trainer.train(config, str(tmp_path), dataset=dataset)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4"]


def test_skipped_updates_inside_calls_are_counted(tmp_path):
    config = tiny(8, 4, log_every=4, checkpoint_every=8, on_nonfinite="skip")
    dataset = PoisonedDataset(data.build(config.data), bad_step=5)
    result = trainer.train(config, str(tmp_path), dataset=dataset)
    assert int(jax.device_get(result.state.step)) == 8
    records = [json.loads(l) for l in open(tmp_path / "train_metrics.jsonl")]
    assert [(r["step"], r["train/skipped_updates"]) for r in records] == [(4, 0.0), (8, 1.0)]


def test_steps_per_call_below_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="steps_per_call"):
        trainer.train(tiny(4, 0), str(tmp_path))
    assert not (tmp_path / "config.json").exists()


def test_cost_analysis_counts_a_several_step_call_as_one_step():
    """bench_step.py reports a K-step call's XLA FLOP count as one step's: XLA's cost
    analysis counts a loop body once. If a jaxlib starts multiplying by the trip count, this
    fails and bench_step.py must divide by K."""
    from benchmarks.common import total_flops
    from wyner_jax.models.base import build_model

    config = tiny(4, 4)
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    mesh = parallel.make_mesh()
    state = trainer.abstract_state(model, config, dataset, mesh)
    host = dataset.train_batch(0, config.train.batch_size, config.seed)
    step_fn = faults.train_step_for(model, "stop")
    one = parallel.compile_train_step(step_fn, mesh).lower(state, parallel.global_batch(host, mesh))
    four = parallel.compile_train_steps(step_fn, mesh).lower(
        state, parallel.global_batches([host] * 4, mesh)
    )
    assert total_flops(one.cost_analysis()) > 0
    # FLOP counts, not rounded values: a loop body counted 4 times would be 4× off
    assert total_flops(four.cost_analysis()) == pytest.approx(total_flops(one.cost_analysis()))
