"""What train.py and eval.py share: distributed start-up flags and friendly errors."""

from __future__ import annotations

import ast
import difflib
import glob
import importlib.util
import inspect
import json
import os
import sys

import ml_collections
from absl import flags, logging

from wyner_jax import parallel, paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Errors that mean "the user asked for something that cannot work": printed as one
# paragraph, without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, PermissionError)


def define_distributed_flags() -> None:
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "host:port of process 0 for multi-process runs (else JAX's env vars).",
    )
    flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
    flags.DEFINE_integer("process_id", None, "Index of this process in a multi-process run.")


def fail(error: Exception | str) -> None:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (``app.run(main, flags_parser=cli.parse_flags)``), with a
    one-paragraph message instead of a traceback for a missing or failing config file, an
    override of a field the config does not have, or a value of the wrong type."""
    try:
        check_config_args(argv)
        return flags.FLAGS(argv)
    except flags.Error as e:
        hint = (
            "a --config.a.b override takes a value of the field's type in the config file "
            "(int, float, bool, str, or a tuple like '(32,)'); "
            if "--config." in str(e)
            else ""
        )
        fail(
            f"bad command line: {str(e).rstrip('.')}. Fix that flag: {hint}`--helpshort` "
            "lists the flags."
        )
    except (ValueError, FileNotFoundError) as e:
        fail(e)


def _config_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """The --config value and the field paths of the --config.a.b=value overrides."""
    path, overrides = None, []
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config."):
            overrides.append(arg[len("--config.") :].split("=", 1)[0])
    return path, overrides


def load_config(path: str) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of ``file.py[:arg]``; ValueError/FileNotFoundError with the fix."""
    file, colon, arg = path.partition(":")
    if not os.path.isfile(file):
        known = sorted(os.path.relpath(p) for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))
        known = [k for k in known if not k.endswith("__init__.py")]
        raise FileNotFoundError(
            f"Config file {file!r} does not exist (relative paths start at {os.getcwd()}); pass "
            f"--config=<a config .py file>, e.g. one of {', '.join(known)}."
        )
    try:
        spec = importlib.util.spec_from_file_location("wyner_jax_checked_config", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        takes_arg = bool(inspect.signature(module.get_config).parameters)
        if colon and not takes_arg:
            raise ValueError(
                f"{file} takes no argument after ':', got {arg!r}; pass --config={file}."
            )
        return module.get_config(*([arg] if colon else []))
    except ValueError as e:
        raise ValueError(f"--config={path}: {e}") from e
    except Exception as e:  # noqa: BLE001 - a broken config file: say which and why
        raise ValueError(
            f"--config={path}: the config file failed to load ({type(e).__name__}: {e}); fix "
            "the file or pass another config."
        ) from e


def _tuples(value):
    """JSON lists back to the tuples the configs use (widths, cut-offs), recursively."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run was trained with: ``<workdir>/config.json`` (written by train.py), so
    ``eval.py --workdir=DIR`` needs neither the config file nor the overrides again."""
    paths.check_supported(workdir)
    path = paths.path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist, so the run's config is unknown; pass the training "
            "config and its overrides (--config=configs/....py --config.a.b=...), or a "
            "--workdir that train.py wrote."
        )
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}); pass --config=<the training config> instead."
        ) from e
    return ml_collections.ConfigDict(_tuples(saved))


def check_config_args(argv: list[str]) -> None:
    """Loads the --config file and checks that every --config.a.b override names a field it
    has, so that a typo is reported with the nearest field names before anything runs."""
    path, overrides = _config_args(argv)
    if path is None:
        if overrides:
            raise ValueError(
                f"--config.{overrides[0]} overrides a config, but no --config file is given; "
                "pass --config=configs/....py with the overrides (eval.py --workdir=DIR "
                "alone uses the run's config.json as it was trained)."
            )
        return  # absl reports the missing required flag (train.py)
    config = load_config(path)
    for key in overrides:
        if not any("[" in p for p in key.split(".")):  # sequence indexing: config_flags's
            find_field(config, key)


def find_field(config, key: str, flag: str = "--config."):
    """(parent ConfigDict, leaf name) of the dotted ``key``; a ValueError naming the nearest
    fields when the config has no such field."""
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
        if isinstance(node, ml_collections.ConfigDict) and part in node:
            if depth == len(parts) - 1:
                return node, part
            node = node[part]
            continue
        where = ".".join(["config"] + parts[:depth])
        fields = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        close = difflib.get_close_matches(part, fields, n=1)
        hint = f" (did you mean {where}.{close[0]}?)" if close else ""
        raise ValueError(
            f"{flag}{key}: {where} has no field {part!r}{hint}. An override must name a "
            f"field of the config; the fields of {where} are: "
            f"{', '.join(fields) if fields else '(none: it is not a group)'}."
        )


def split_config_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Takes the ``--config.a.b=value`` arguments out of ``argv`` (for tools that load several
    configs, so that absl does not see them): (the other arguments, {a.b: value text})."""
    rest, overrides = [], {}
    for arg in argv:
        if arg.startswith("--config.") and "=" in arg:
            key, _, text = arg[len("--config.") :].partition("=")
            overrides[key] = text
        elif arg.startswith("--config."):
            raise ValueError(f"{arg}: an override takes a value, e.g. {arg}=<value>.")
        else:
            rest.append(arg)
    return rest, overrides


def apply_overrides(config, overrides: dict, flag: str = "--config.") -> None:
    """Sets each dotted field of ``overrides`` in ``config`` (in place), converting the value
    (text, or a Python value) to the field's type as ``--config.a.b=value`` does (ints, floats,
    bools, strings, tuples like '(32,)'); unknown fields and values of the wrong type are
    refused with the fix. ``flag``: how the messages name the setting's origin."""
    for key, value in overrides.items():
        node, leaf = find_field(config, key, flag)
        old = node[leaf]
        try:
            new = _convert(value, old)
        except (ValueError, SyntaxError) as e:
            raise ValueError(
                f"{flag}{key}={value}: expected a value of the field's type "
                f"{type(old).__name__} (it is {old!r} now): {e}"
            ) from e
        node[leaf] = new


def _convert(value, old):
    """``value`` (command-line text) as the type of the field's current value ``old``."""
    value = value if isinstance(value, str) else repr(value)
    if isinstance(old, bool):
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise ValueError("not a bool (true/false)")
    if isinstance(old, (int, float)):
        return type(old)(value)
    if isinstance(old, str):
        return value
    if old is None:  # an optional field: a Python literal, else the text itself
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    parsed = ast.literal_eval(value)
    if isinstance(old, tuple):
        return tuple(parsed) if isinstance(parsed, (list, tuple)) else (parsed,)
    return parsed


def run(FLAGS, mode: str) -> None:
    """Starts JAX (multi-process when asked), then trains or evaluates; exits 1 with a
    one-paragraph message on a user error."""
    if not FLAGS["verbosity"].present:
        # Orbax and JAX log every checkpoint at INFO; keep the console to our progress lines.
        logging.set_verbosity(logging.WARNING)
    try:
        parallel.maybe_initialize_distributed(
            FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
        )
        from wyner_jax import trainer  # after distributed init: it touches jax.devices()

        config = FLAGS.config
        if config is None and mode == "eval":  # eval.py --workdir=DIR alone
            config = load_run_config(FLAGS.workdir)
        if mode == "train":
            trainer.train_and_evaluate(config, FLAGS.workdir)
        else:
            trainer.evaluate_checkpoint(config, FLAGS.workdir, FLAGS.which)
    except USER_ERRORS as e:
        fail(e)
