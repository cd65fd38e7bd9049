"""The training loop, shared by every model (flax examples/imagenet style: flat functions).

config ──> data.build ──> global batches (sharded over 'data')
       ──> model.train_step (D update, G update, EMA; one jit over the mesh)
       ──> metrics writer, Orbax checkpoints ──> evaluation (EMA weights) ──> metrics.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from wyner_jax import checkpointing, data, faults, parallel, paths
from wyner_jax.evaluation import periodic, runner
from wyner_jax.metrics_writer import MetricsWriter, Progress, log_progress, write_json_atomic
from wyner_jax.models.base import build_model
from wyner_jax.prefetch import Prefetcher

# Shown on the progress line when present.
PROGRESS_KEYS = ("disc/total", "gen/total", "gen/var_ci", "loss/total")


def prepare_workdir(workdir: str | os.PathLike) -> None:
    """Creates ``workdir`` (local, or a gs:// prefix); fails early if this process cannot
    write there. Each process probes its own file: on a shared folder or bucket one
    process's probe is not another's to delete."""
    paths.check_supported(workdir)
    workdir = paths.path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)  # writes nothing on gs://
        probe = workdir / f".write_test.{jax.process_index()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(
            f"Cannot write to --workdir={str(workdir)!r} ({e.strerror or e}); pass a directory "
            "you can create and write to (not an existing file, not under a read-only folder; "
            "for gs://, a bucket that exists and that your credentials may write)."
        ) from e


def write_config(workdir: str, config) -> None:
    """Writes the resolved config; called once the run is known to be this workdir's (after
    the checkpoint check), so a refused run leaves the previous config.json in place."""
    if jax.process_index() == 0:
        write_json_atomic(
            paths.path(workdir) / "config.json", json.loads(config.to_json_best_effort())
        )


def check_train_config(config, mesh) -> None:
    """Rejects loop settings that cannot work, before anything is built or written."""
    t = config.train
    if t.on_nonfinite not in ("stop", "skip"):
        raise ValueError(
            f"config.train.on_nonfinite must be 'stop' or 'skip', got {t.on_nonfinite!r}; "
            "set --config.train.on_nonfinite=stop (or skip)."
        )
    for key in (
        "num_steps",
        "batch_size",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "prefetch",
        "steps_per_call",
    ):
        if t[key] < 1:
            raise ValueError(
                f"config.train.{key} must be a positive integer, got {t[key]}; set "
                f"--config.train.{key} to 1 or more."
            )
    parallel.check_batch_size(t.batch_size, mesh)


def step_calls(start: int, total: int, config) -> list[tuple[int, int]]:
    """The loop's compiled calls as (first step, number of steps): ``train.steps_per_call``
    steps per call, fewer where a log, checkpoint, image or evaluation step or the end of
    training falls inside one (the loop can only look at the state between calls; each other
    length is one more compilation). With log/checkpoint/image/evaluation intervals that are
    multiples of
    ``steps_per_call`` and a start on one, every call but the last is full length."""
    t = config.train
    every = [e for e in (t.log_every, t.checkpoint_every, t.image_every, t.eval_every) if e > 0]
    calls, step = [], start
    while step < total:
        n = min([t.steps_per_call, total - step] + [e - step % e for e in every])
        calls.append((step, n))
        step += n
    return calls


def fingerprint(config, dataset, state) -> dict:
    """What a checkpoint must agree with to be restored into this run: the model, the data,
    and a digest of the state's structure (every parameter's path and shape), so that a
    checkpoint of an incompatible config is refused rather than mistaken for a damaged one."""
    shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), state)
    digest = hashlib.sha256(str(jax.tree_util.tree_flatten_with_path(shapes)[0]).encode())
    return {
        "model": config.model.name,
        "data": config.data.name,
        "x_shape": list(dataset.x_shape),
        "y_shape": list(dataset.y_shape),
        "state_structure": digest.hexdigest()[:16],
    }


def create_state(model, config, dataset, mesh):
    """Initialises the model state, replicated over the mesh."""
    batch = dataset.train_batch(0, config.train.batch_size, config.seed)
    init = jax.jit(model.init, out_shardings=parallel.replicated(mesh))
    return init(jax.random.PRNGKey(config.seed), {k: jnp.asarray(v) for k, v in batch.items()})


def abstract_state(model, config, dataset, mesh):
    """The state's shapes, dtypes and (replicated) shardings, traced without compiling
    ``init``: what a checkpoint is checked against and restored into, so that resuming, and
    refusing another config's checkpoint, costs no initialisation compile."""
    batch = dataset.train_batch(0, config.train.batch_size, config.seed)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(config.seed), batch)
    rep = parallel.replicated(mesh)
    return jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes
    )


def step_values(metrics: dict, i: int) -> dict[str, float]:
    """The loss terms of one step as floats: ``metrics`` of a one-step call (scalars) or of
    a several-step call (stacked), of which the ``i``-th step."""
    return {k: float(np.atleast_1d(v)[i]) for k, v in jax.device_get(metrics).items()}


def nonfinite_error(step: int, metrics: dict[str, float]) -> FloatingPointError:
    bad = faults.nonfinite_terms(metrics)
    return FloatingPointError(
        f"Non-finite loss at step {step}: {', '.join(f'{k}={metrics[k]}' for k in bad)}. "
        "Training stopped and nothing after that step was saved; the latest checkpoint is "
        "the last good state. Lower the learning rates, check the input data for NaN/Inf, or "
        "set --config.train.on_nonfinite=skip to skip such batches."
    )


def nonfinite_state_error(step: int) -> FloatingPointError:
    return FloatingPointError(
        f"The training state holds NaN/Inf at step {step} although every loss term was "
        "finite: a non-finite gradient. It was not saved; the latest checkpoint is the last "
        "good state. Lower the learning rates (--config.optim.clip_grad_norm bounds large "
        "but finite gradients)."
    )


@dataclasses.dataclass
class TrainResult:
    model: object
    state: object
    dataset: object
    mesh: object
    preempted: str | None = None  # the signal that stopped training early, if any


def train(config, workdir: str, dataset=None, mesh=None, model=None) -> TrainResult:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint.

    A non-finite update stops training (``train.on_nonfinite='stop'``) or is skipped and
    counted (``'skip'``); SIGTERM/SIGINT save a checkpoint at the current step and return.
    """
    # Everything that can reject the config runs before anything is written to workdir.
    paths.check_supported(workdir)
    mesh = mesh if mesh is not None else parallel.make_mesh()
    check_train_config(config, mesh)
    dataset = dataset if dataset is not None else data.build(config.data)
    dataset.steps_per_epoch(config.train.batch_size)  # the batch must fit in the data
    periodic.check_settings(config)
    if config.train.evaluate_at_end or config.train.eval_every > 0:
        runner.check_evaluation_settings(dataset, config)
    model = model if model is not None else build_model(config, dataset)
    prepare_workdir(workdir)
    is_chief = jax.process_index() == 0

    abstract = abstract_state(model, config, dataset, mesh)
    run_print = fingerprint(config, dataset, abstract)
    ckpt = checkpointing.Checkpointer(
        paths.path(workdir) / "checkpoints",
        keep=config.train.keep_checkpoints,
        fingerprint=run_print,
    )
    restored, restored_step = ckpt.restore(abstract)  # refuses another config's checkpoint
    write_config(workdir, config)
    if restored is not None:
        state = restored
        log_progress(f"Resumed from {ckpt.directory}/{restored_step}.")
    else:
        state = create_state(model, config, dataset, mesh)
    start = int(jax.device_get(state.step))
    total = int(config.train.num_steps)
    recorder = periodic.EvalRecorder(config, workdir, start, fingerprint=run_print)

    step_fn = faults.train_step_for(model, config.train.on_nonfinite)
    one_step = parallel.compile_train_step(step_fn, mesh)
    # Calls of several steps (lax.scan) only when asked for: steps_per_call = 1 runs exactly
    # the one-step program.
    many_steps = (
        parallel.compile_train_steps(step_fn, mesh) if config.train.steps_per_call > 1 else None
    )
    writer = MetricsWriter(workdir, start, enabled=is_chief)
    progress = Progress(start, total)
    B, seed = config.train.batch_size, config.seed
    pi, pc = jax.process_index(), jax.process_count()
    log_every, ckpt_every = config.train.log_every, config.train.checkpoint_every
    image_every, eval_every = config.train.image_every, config.train.eval_every
    # The last step's evaluation is the final one (train_and_evaluate) when that is on.
    final_eval = config.train.evaluate_at_end
    skip = config.train.on_nonfinite == "skip"
    calls = step_calls(start, total, config)
    pending = []  # (first step, finite flag(s), metrics) on device, read at the next check
    skipped = int(ckpt.restored_meta.get("skipped_updates", 0))  # counted over resumes
    preempted = None

    def call_batch(i):
        first, n = calls[i]
        local = [dataset.train_batch(s, B, seed, pi, pc) for s in range(first, first + n)]
        if n == 1:
            return parallel.global_batch(local[0], mesh)
        return parallel.global_batches(local, mesh)

    try:
        batches = Prefetcher(call_batch, 0, len(calls), size=config.train.prefetch)
        with faults.Preemption() as preemption, batches:
            for (first, n), batch in zip(calls, batches):
                if n == 1:
                    state, metrics, finite = one_step(state, batch)
                else:
                    state, metrics, finite = many_steps(state, batch)
                done = first + n
                pending.append((first, finite, metrics))
                # Read the flag once per call: a signal arriving later in this iteration is
                # handled at the next one, so "saved" is never printed without a save. With
                # several processes all of them agree on it (a notice may reach one worker).
                stop = faults.agreed_stop(preemption.requested, pc)
                save = done % ckpt_every == 0 or done == total or stop is not None
                log = done % log_every == 0 or done == total
                evaluate = eval_every > 0 and done % eval_every == 0
                evaluate = evaluate and not (done == total and final_eval)
                if not (save or log or evaluate):
                    continue
                flags = jax.device_get([f for _, f, _ in pending])
                # (step number, its call's metrics, its index there) of each non-finite step
                bad = [
                    (call_first + i + 1, call_metrics, i)
                    for (call_first, _, call_metrics), f in zip(pending, flags)
                    for i, ok in enumerate(np.atleast_1d(f))
                    if not ok
                ]
                pending = []
                if bad and not skip:
                    bad_step, bad_metrics, i = bad[0]
                    raise nonfinite_error(bad_step, step_values(bad_metrics, i))
                if bad:
                    skipped += len(bad)
                    logging.warning(
                        "Skipped %d non-finite update(s), the first at step %d.",
                        len(bad),
                        bad[0][0],
                    )
                values = step_values(metrics, n - 1)
                values["train/skipped_updates"] = float(skipped)
                writer.scalars(done, values)
                if is_chief and log:
                    log_progress(progress.line(done, values, PROGRESS_KEYS))
                if image_every > 0 and done % image_every == 0 and is_chief:
                    runner.log_image_grids(
                        model, parallel.local_copy(state), dataset, config, writer, done
                    )
                if save and not bool(faults.state_is_finite(state)):
                    raise nonfinite_state_error(done)
                if evaluate:
                    evaluate_during_training(model, state, dataset, config, writer, recorder, done)
                if save:
                    ckpt.save(done, state, force=True, extra={"skipped_updates": skipped})
                if stop is not None:
                    preempted = stop
                    ckpt.wait()
                    log_progress(
                        f"{preempted} received: saved the checkpoint of step {done}; "
                        "run the same command again to continue."
                    )
                    break
    finally:
        ckpt.wait()
        writer.close()
        recorder.close()
    ckpt.close()
    return TrainResult(model, state, dataset, mesh, preempted)


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains, then evaluates the EMA generator; writes metrics.json and figures/."""
    result = train(config, workdir)
    model, dataset = result.model, result.dataset
    state = parallel.local_copy(result.state)
    if not config.train.evaluate_at_end or result.preempted:
        return {}
    metrics = runner.evaluate_and_write(model, state, dataset, config, workdir)
    step = int(metrics["train/step"])
    recorder = periodic.EvalRecorder(
        config, workdir, step, fingerprint=fingerprint(config, dataset, result.state)
    )
    try:
        recorder.record(step, metrics, result.state)
    finally:
        recorder.close()
    return metrics


def evaluate_during_training(model, state, dataset, config, writer, recorder, step) -> None:
    """One periodic evaluation (``train.eval_every``): TensorBoard ``eval/<name>``,
    ``eval_metrics.jsonl``, and the best checkpoint when ``eval.best_metric`` improves."""
    metrics, _ = runner.evaluate(model, parallel.local_copy(state), dataset, config)
    writer.eval_scalars(step, metrics)
    recorder.record(step, metrics, state)
    if jax.process_index() == 0:
        # Measurements only: not the constants reported beside them (closed forms, chance).
        constants = ("closed_form/", "_chance", "gaussian/rho")
        shown = [k for k in sorted(metrics) if not any(c in k for c in constants)][:6]
        if recorder.metric:
            shown = [recorder.metric] + [k for k in shown if k != recorder.metric][:5]
        log_progress(f"eval at step {step}: " + " ".join(f"{k}={metrics[k]:.4g}" for k in shown))


def restore_for_eval(config, workdir: str, which: str = "latest"):
    """Restores the latest checkpoint of ``workdir``, or with ``which='best'`` the one kept
    by ``eval.best_metric`` (for eval.py)."""
    paths.check_supported(workdir)
    if which not in ("latest", "best"):
        raise ValueError(f"which must be 'latest' or 'best', got {which!r}.")
    directory = paths.path(workdir) / ("checkpoints" if which == "latest" else periodic.BEST_DIR)
    # Checked first: nothing is built for a workdir that has nothing to restore.
    steps = [p.name for p in directory.iterdir()] if directory.is_dir() else []
    if not any(name.isdigit() for name in steps) and which == "best":
        raise FileNotFoundError(
            f"No best checkpoint in {directory}: it is kept only by a run trained with "
            "--config.eval.best_metric=<metric> (and train.eval_every for evaluations during "
            "training); evaluate the latest checkpoint with --which=latest."
        )
    if not any(name.isdigit() for name in steps):
        raise FileNotFoundError(
            f"No checkpoint in {directory}: --workdir must be a training run's directory. "
            f"Train first with `python train.py --config=... --workdir={workdir}`, or pass the "
            "--workdir that train.py wrote."
        )
    dataset = data.build(config.data)
    mesh = parallel.make_mesh()
    model = build_model(config, dataset)
    state = abstract_state(model, config, dataset, mesh)
    ckpt = checkpointing.Checkpointer(directory, fingerprint=fingerprint(config, dataset, state))
    restored, step = ckpt.restore(state)
    ckpt.close()
    if restored is None:
        raise FileNotFoundError(
            f"No readable checkpoint in {directory} (every one is damaged); train again with "
            f"`python train.py --config=... --workdir={workdir}`."
        )
    logging.info("Restored %s/%d", directory, step)
    return model, restored, dataset, mesh


def evaluate_checkpoint(config, workdir: str, which: str = "latest") -> dict[str, float]:
    """eval.py: evaluates the latest (or best) checkpoint; the best one's metrics and figures
    go to ``WORKDIR/best/`` so they do not replace the latest checkpoint's."""
    model, state, dataset, _ = restore_for_eval(config, workdir, which)
    out = workdir if which == "latest" else paths.path(workdir) / "best"
    return runner.evaluate_and_write(
        model, parallel.local_copy(state), dataset, config, out, tensorboard=which == "latest"
    )
