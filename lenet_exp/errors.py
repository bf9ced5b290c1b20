"""The one exception type whose message is meant for the user, the one check for config values (each value
echoed as typed), a config instantiated with its mistakes said in one sentence (``built``), and the one way every
command ends on bad input: ``error: <sentence>`` on stderr (and in the run's log), exit status 1."""

import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CodeType
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input (config, files, environment). The message is one sentence saying what to do.

    The entry points print it alone, without a traceback, and exit non-zero.
    """


def typed(value: Any) -> str:
    """``value`` as a user types it in an override or YAML file: ``true``, ``false``, ``null``; a string in quotes."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value)


def check_value(key: str, value: Any, kind: str, example: Any = None, low: float = 0, high: float | None = None) -> Any:
    """Return ``value`` if it is what config key ``key`` needs, else raise one sentence that says so.

    ``kind`` is ``"whole"`` (an int >= ``low``, never a bool; <= ``high`` when given), ``"number"`` (an int or
    float > ``low``, or in [``low``, ``high``) when ``high`` is given), or ``"switch"`` (true or false, not a string
    such as ``off``, which Python would take as true).
    """
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "switch":  # (0 and 1 mean what Python says they mean: a stored config may hold them)
        ok, must = isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)), "true or false"
    elif kind == "whole" and high is not None:
        ok = numeric and isinstance(value, int) and low <= value <= high
        must = f"a whole number from {low:g} to {high:g}"
    elif kind == "whole":
        ok = numeric and isinstance(value, int) and value >= low
        must = "a positive whole number" if low == 1 else f"a whole number >= {low:g}"
    elif high is None:
        ok, must = numeric and value > low, "a positive number" if low == 0 else f"a number > {low:g}"
    else:
        ok, must = numeric and low <= value < high, f"a number in [{low:g}, {high:g})"
    if not ok:
        hint = f", such as {example}" if example is not None else ""
        raise UserError(f"{key}={typed(value)} must be {must}{hint}.")
    return value


def nan_loss(epoch: int, step: int, lr: float, precision: str, saved: bool, eps: float | None) -> UserError:
    """The sentence of a training loss that became NaN or infinite at ``step`` of ``epoch`` (both from 0);
    ``saved``: whether the run folder holds a checkpoint; ``eps``: the optimizer's (Adam's), if it has one."""
    kept = "the last checkpoint holds the last good one" if saved else "no epoch of this run was saved yet"
    fix = f"lower the learning rate (it is {lr:g})"
    if precision == "16-true" and eps is not None and eps < 6e-8:  # float16 weights: such an eps is 0 there
        fix = "train with trainer.precision=16-mixed (float32 weights)"
    elif epoch == step == 0:  # before any update: the net (or the data) gives it, whatever the learning rate
        fix = "at the first step, before any weight changed, it comes from model.net's output: check its forward"
    return UserError(
        f"the training loss became NaN or infinite in epoch {epoch + 1} at step {step + 1}, so training stopped "
        f"before saving this epoch ({kept}); {fix} and run again."
    )


def check_callable(key: str, made: Any, example: str) -> Any:
    """Return ``made`` (what ``_partial_: true`` makes of a config: an optimizer, a scheduler) if it can be called
    with the arguments the config gave it, else one sentence, at the start: not a TypeError at the first step."""
    import inspect

    if made is None:
        return made
    if not callable(made):
        raise UserError(f"{key}={made!r} is not a class or function to call; give one such as {example}.")
    function = getattr(made, "func", made)
    try:
        inspect.signature(function).bind_partial(*getattr(made, "args", ()), **getattr(made, "keywords", {}))
    except TypeError as err:  # a keyword it does not take
        name = getattr(function, "__qualname__", key)
        raise UserError(
            f"{key} cannot be made: {name} {err}; remove that {key}.* key, or choose another _target_."
        ) from None
    except ValueError:  # no signature to read (a builtin): its call will say
        pass
    return made


def chain(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the exceptions behind it, nearest first: what it was raised from, else what was being handled
    when it was raised (each once, should the chain loop)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err``, also when Hydra's instantiate wrapped it in its own exception."""
    while err is not None and not isinstance(err, UserError):
        err = err.__cause__
    return err


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message (libraries append context lines), else its type's name."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def root_cause(err: BaseException) -> BaseException:
    """The exception at the bottom of ``err``'s chain: a library that wraps another's error often says less than it
    (Optuna's "an exception is raised during the commit" for SQLite's "attempt to write a readonly database")."""
    *_, last = chain(err)
    return last


def fail(err: BaseException | str) -> NoReturn:
    """End the command: ``error: <sentence>`` on stderr, and in the run's log file when there is one; exit 1.

    Through the console handler of runtime/console.py where it is installed (it sends errors to stderr and
    keeps them above a progress bar); before that (Hydra's own set-up), straight to stderr.
    """
    say(f"error: {err if isinstance(err, str) else first_line(err)}")
    sys.exit(1)


def say(message: str) -> None:
    """``message`` on stderr (and in the run's log file), as ``fail`` and an interrupt say theirs."""
    if any(getattr(handler, "errors_to_stderr", False) for handler in logging.getLogger().handlers):
        logging.getLogger("lenet_exp").error(message)
    else:
        print(message, file=sys.stderr, flush=True)


INTERRUPTED = 130  # a command stopped by Ctrl-C (SIGINT), as a shell reports it
TERMINATED = 143  # a command stopped by SIGTERM (kill, a scheduler), as a shell reports it


class Terminated(KeyboardInterrupt):
    """SIGTERM outside Lightning's loops, raised where the command is, as Ctrl-C raises KeyboardInterrupt."""


def interruption(err: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped a command (``Ctrl-C`` or ``SIGTERM``) and its exit status."""
    return ("SIGTERM", TERMINATED) if isinstance(err, Terminated) else ("Ctrl-C", INTERRUPTED)


def _raise_terminated(signum: int, frame: Any) -> None:
    # Lightning's loops install a handler of their own that calls the one they found (this) after theirs, and
    # stop at the next step's end: only while this is the process's handler is the signal this one's to answer
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        raise Terminated


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM stops a command as Ctrl-C does, so that it ends with the sentence of what was
    kept, not silently. Only where nothing else answers SIGTERM (a scheduler's wrapper, such as submitit, may),
    and in the main thread (the only one Python lets set it)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def unwrap_user_errors() -> Iterator[None]:
    """Raise the UserError behind what the block raises as it is (Hydra's instantiate wraps them in its own
    exceptions); anything else is a bug and is raised unchanged, with its traceback."""
    try:
        yield
    except Exception as err:
        if (cause := user_error(err)) is None:
            raise
        raise cause from None


@contextmanager
def resolving(config: Any) -> Iterator[None]:
    """An interpolation of ``config`` that the block cannot resolve (``${oc.env:NAME}`` of a variable not set, a
    key that does not exist, a ``${`` left open) as one sentence naming the key as it was typed, not OmegaConf's
    traceback."""
    from omegaconf import OmegaConf
    from omegaconf.errors import GrammarParseError, InterpolationResolutionError

    try:
        yield
    except (InterpolationResolutionError, GrammarParseError) as err:
        why = str(err).splitlines()[0].strip()
        key = err.full_key or _unresolvable_key(config, why)  # DictConfig.get's error names no key
        typed_value = OmegaConf.to_container(config, resolve=False)
        for part in (key or "").split("."):
            typed_value = typed_value.get(part) if isinstance(typed_value, dict) else None
        why = re.sub(r"^\w+ raised while resolving interpolation: ", "", why).strip("\"'").rstrip(".")  # oc.env's
        given = f"{key}={typed_value}" if isinstance(typed_value, str) else key or "a setting"
        raise UserError(
            f"{given} cannot be resolved ({why}); set what it refers to, or give {key or 'it'} a value of its own."
        ) from None


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every value under the plain mapping ``node`` that is not itself a mapping (a list
    is one value)."""
    if not isinstance(node, dict):
        yield path, node
        return
    for key, value in node.items():
        yield from leaves(value, f"{path}.{key}" if path else str(key))


def _unresolvable_key(config: Any, why: str) -> str | None:
    """The first key of ``config`` (a run's own settings first, then its folders) whose interpolation fails for the
    reason ``why``."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(config, resolve=False)
    hydra = settings.pop("hydra", None) if isinstance(settings, dict) else None
    candidates = [*(key for key, _ in leaves(settings)), *(["hydra.run.dir", "hydra.sweep.dir"] if hydra else [])]
    for key in candidates:
        try:
            OmegaConf.select(config, key, throw_on_resolution_failure=True)
        except Exception as err:
            if str(err).splitlines()[0].strip() == why:
                return key
    return None


def check_resolves(config: Any) -> None:
    """Every interpolation of ``config`` resolves (``resolving``'s sentence if not): a run's config, checked
    before anything reads it, so that no key fails later with OmegaConf's traceback."""
    from omegaconf import OmegaConf

    with resolving(config):
        # first each key whose value interpolates, not through Hydra's node: a key that interpolates one of them
        # (logger.version, through Hydra's job.override_dirname, holds every override) would be named in its place
        for key, value in leaves(OmegaConf.to_container(config, resolve=False)):
            if isinstance(value, str) and "${" in value and "${hydra:" not in value:
                OmegaConf.select(config, key, throw_on_resolution_failure=True)
        OmegaConf.to_container(config, resolve=True)


def exit_on_user_error(function: Callable[[], T]) -> T:
    """Run ``function``; a UserError behind what it raises ends the program through ``fail``, and Ctrl-C outside
    what handles it itself (a start-up's imports) in one line and status 130. Anything else is a bug and keeps
    its traceback."""
    try:
        with unwrap_user_errors(), sigterm_interrupts():
            return function()
    except UserError as err:
        fail(err)
    except KeyboardInterrupt as err:
        what, status = interruption(err)
        say(f"interrupted ({what}) before the command ended; what it had written is kept")
        sys.exit(status)


def traceback_codes(err: BaseException) -> list[CodeType]:
    """The code of each frame of ``err``'s traceback, outermost first."""
    codes, frame = [], err.__traceback__
    while frame is not None:
        codes.append(frame.tb_frame.f_code)
        frame = frame.tb_next
    return codes


def raised_in(err: BaseException) -> CodeType | None:
    """The code whose frame raised ``err`` (the innermost of its traceback): tells a library's refusal of its
    arguments from an error deeper inside it."""
    return (traceback_codes(err) or [None])[-1]


def built(settings: Any) -> Any:
    """``settings`` (the data module's, the model's, a callback's, a logger's) instantiated. A key its class does not
    take (``+data.num_workers=4``) or a ``_target_`` that cannot be imported is one sentence naming the key, not
    Hydra's wrapped error; only errors of the call itself: an error inside the constructor keeps its traceback."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(settings)
    except InstantiationException as err:
        cause, said = err.__cause__, str(err)
        key = match[1] if (match := re.search(r"full_key: (\S+)", said)) else "the config"
        if isinstance(cause, ImportError) and (target := re.search(r"Error locating target '([^']+)'", said)):
            module = cause.__cause__.name if isinstance(cause.__cause__, ModuleNotFoundError) else None
            if module == "lightning" and target[1].startswith("lightning.pytorch."):  # Lightning's docs' spelling
                ours = "pytorch_lightning." + target[1].removeprefix("lightning.pytorch.")
                raise UserError(
                    f"{key}._target_={target[1]} cannot be imported: the lightning package is not installed here; "
                    f"lenet_exp runs on pytorch_lightning, so write {ours}."
                ) from None
            if module and target[1].startswith(f"{module}."):  # the user's own module, not on Python's path here
                raise UserError(
                    f"{key}._target_={target[1]} cannot be imported: Python finds no module {module} here; put the "
                    f"folder that holds {module} on PYTHONPATH, or give a class with its module, spelled as Python "
                    "imports it."
                ) from None
            raise UserError(
                f"{key}._target_={target[1]} cannot be imported; give a class with its module, spelled as Python "
                "imports it."
            ) from None
        if isinstance(cause, ModuleNotFoundError):  # a package the class needs: RichProgressBar's rich, ...
            raise UserError(f"{key} cannot be built: {cause}") from None
        code = raised_in(cause) if isinstance(cause, TypeError) else None
        if code is None or f"{os.sep}hydra{os.sep}" not in code.co_filename:
            raise  # not the call's arguments: a failure inside the constructor, with its traceback
        if given := re.search(r"missing 1 required positional argument: '(optimizer|params)'", str(cause)):
            raise UserError(  # an optimizer or schedule built whole, where lenet_exp gives it its parameters itself
                f"{key} cannot be built: {cause}; lenet_exp gives it the {given[1].replace('params', 'parameters')} "
                f"itself, so add ++{key}._partial_=true (_partial_: true in its file)."
            ) from None
        if missing := re.search(r"missing \d+ required (?:positional|keyword-only) arguments?: '(\w+)'", str(cause)):
            raise UserError(f"{key} cannot be built: {cause}; give it with +{key}.{missing[1]}=<value>.") from None
        raise UserError(
            f"{key} cannot be built: {cause}; remove that {key}.* key, or choose another _target_."
        ) from None
