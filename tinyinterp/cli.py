"""The command line's plumbing: one-line errors, checked argument types, help with defaults,
and the progress bar of training and download-cub.

Every subcommand (``train``, ``evaluate``, ``visualize``, ``gradcheck``,
``download-cub``) is added by its own module's ``add_*_parser(sub)`` and runs through
:func:`run_command`, which turns the errors a user can fix into one line on stderr:

    exit 2   a bad argument (argparse's own errors, and :class:`UsageError` raised after
             parsing: a missing --data folder, --resume with --overwrite, ...)
    exit 1   bad input found while working (:data:`USER_ERRORS`: malformed data, a
             corrupt checkpoint, no GPU, a run folder that is not to be replaced, ...)
    exit 130 Ctrl-C (:class:`Interrupted` says what was kept and how to go on)

Anything else is a bug and keeps its traceback. ``--debug`` (on every subcommand) or
the environment variable ``TINYINTERP_DEBUG=1`` shows the traceback of the one-line
errors too.

Options are added in one style: ``help`` says what the option does, and the formatter
appends "(default: ...)" from the option's default. Options whose default depends on
something else (the recipe's, per ``--task``) have ``default=None`` and say their
defaults in their help.
"""
import argparse
import math
import os
import sys

DEBUG_VARIABLE = "TINYINTERP_DEBUG"


class UsageError(Exception):
    """A bad argument found after argparse's own checks: one line, exit 2."""


class UserError(Exception):
    """Input the user can fix (say, a run folder not to be replaced): one line, exit 1."""


class Interrupted(Exception):
    """Ctrl-C, with what was kept and the command that goes on: exit 130."""


def _user_errors():
    from .backend import GpuUnavailable
    from .checkpoint import CheckpointError
    from .data.cub import CubFormatError

    # OSError: a missing file, a full disk, a folder that cannot be written
    return (UserError, CubFormatError, CheckpointError, GpuUnavailable, OSError)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (its usage block is what --help is for)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to each option's help, except where the help says its
    default itself, the default is None, or the option is a flag (off unless given)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or "(default:" in text or action.default in (None, argparse.SUPPRESS)
                or action.nargs == 0 or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


def add_parser(sub, name, **kwargs):
    """``sub.add_parser`` with this module's help formatter."""
    return sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)


# ---- checked argument types: argparse prints "argument --epochs: must be ..." ----

def _number(kind, text, low):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if not math.isfinite(value) or value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
    return value


def int_at_least(low):
    """An argparse type: a whole number >= ``low``."""
    def check(text):
        return _number(int, text, low)
    check.__name__ = f"int_at_least_{low}"
    return check


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def nonnegative_float(text):
    """An argparse type: a finite number >= 0."""
    return _number(float, text, 0.0)


def positive_float(text):
    """An argparse type: a finite number > 0."""
    value = _number(float, text, 0.0)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


# ---- running a subcommand ----

def debugging(args):
    return getattr(args, "debug", False) or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def run_command(args, prog="python -m tinyinterp"):
    """``args.func(args)``, with the user's errors as one line on stderr (see the module
    docstring); returns the exit status."""
    where = f"{prog} {args.command}"
    try:
        return args.func(args)
    except UsageError as e:
        if debugging(args):
            raise
        return _fail(f"{where}: error: {e} (see {where} --help)", 2)
    except Interrupted as e:
        return _fail(f"\n{e}", 130)
    except KeyboardInterrupt:
        if debugging(args):
            raise
        return _fail(f"\n{where}: interrupted", 130)
    except _user_errors() as e:
        if debugging(args):
            raise
        hint = "" if isinstance(e, UserError) else " (--debug shows the traceback)"
        return _fail(f"{where}: {one_line(e)}{hint}", 1)


def one_line(error):
    """An exception's message on one line (OSError's strerror and file name included)."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def _fail(message, status):
    sys.stdout.flush()
    print(message, file=sys.stderr)
    return status


def progress(i, n, width=24, extra=""):
    """A one-line progress bar, redrawn in place (only on a terminal: in a log file the
    redraws would pile up)."""
    if not sys.stdout.isatty():
        return
    done = int(width * i / max(1, n))
    sys.stdout.write(f"\r  [{'#' * done}{'.' * (width - done)}] {i}/{n} {extra}")
    sys.stdout.flush()
