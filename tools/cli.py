"""Command lines that can be driven in-process: every `python -m tools.<tool>` and
`python -m train.<system>` parses into its own `absl.flags.FlagValues`, so tests call
`main(argv)` in the pytest process and several entry points share one process.

A tool writes `define_flags(flag_values)` (its flags, each with `flag_values=flag_values`) and
`run(FLAGS, args) -> exit code` (FLAGS: the parsed FlagValues; args: the positional arguments),
then
    def main(argv=None):
        return cli.main(define_flags, run, argv)

    if __name__ == "__main__":
        cli.run_main(define_flags, run)

A flag naming a folder the tool writes into is checked when parsing (`require_directory`), and
so is a float flag that must be finite (`require_finite`).
"""
import math
import os
import sys

from absl import app, flags

HELP_ARGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def parse(flag_values, argv, absl_flags=False):
    """Parses `argv` (argv[0] is the program) into `flag_values`; returns the positional
    arguments. Flags that `flag_values` lacks go to absl's global FLAGS (its own, such as
    --verbosity): parsed when there are any, or always with `absl_flags` (absl's app needs them
    parsed); any other unknown flag is an error. `--help` prints the flags and exits.
    Raises `flags.Error` with absl's message for bad flags."""
    argv = list(argv)
    if any(arg in HELP_ARGS for arg in argv[1:]):
        print(flag_values.get_help())
        sys.exit(0)
    rest = flag_values(argv, known_only=True)
    unknown = [arg for arg in rest[1:] if arg.startswith("-") and arg != "-"]
    if absl_flags or unknown:
        flags.FLAGS([argv[0], *unknown])  # raises UnrecognizedFlagError for the rest
    return [arg for arg in rest[1:] if arg not in unknown]


def directory_error(path):
    """Why `path` cannot be a folder to write into, or None: it exists and is not a directory,
    or the nearest existing path above it is not one (so it cannot be created)."""
    if not path or os.path.isdir(path):
        return None
    if os.path.lexists(path):
        return "is a file, not a directory" if os.path.isfile(path) else "is not a directory"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot be created: {parent} is not a directory"
    return None


def require_directory(name, flag_values):
    """Registers a check of flag `name`, when set: a folder to write into (`directory_error`);
    absl then reports a bad value in one line naming the flag."""
    def check(path):
        error = directory_error(path)
        if error:
            raise flags.ValidationError(error)
        return True

    flags.register_validator(name, check, flag_values=flag_values)


def require_finite(name, flag_values):
    """Registers a check of float flag `name`: not NaN nor infinite (absl reads "1e400" as inf)."""
    flags.register_validator(name, lambda value: value is None or math.isfinite(value),
                             message="must be a finite number", flag_values=flag_values)


def new_flags(define_flags):
    """A fresh FlagValues holding the flags `define_flags(flag_values)` defines."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    return flag_values


def main(define_flags, run, argv=None):
    """Parses `argv` (default sys.argv) and returns `run(FLAGS, args)`, in this process."""
    flag_values = new_flags(define_flags)
    args = parse(flag_values, sys.argv if argv is None else argv)
    return run(flag_values, args)


def run_main(define_flags, run):
    """The `__main__` of an entry point: absl's app (logging set up, `app.UsageError` printed
    with the usage) around `run`; a flag error is printed as absl prints it, exit status 1."""
    flag_values = new_flags(define_flags)

    def parse_or_exit(argv):
        try:
            return parse(flag_values, argv, absl_flags=True)
        except flags.Error as error:
            sys.stderr.write(f"FATAL Flags parsing error: {error}\n"
                             "Pass --help to see the flags.\n")
            sys.exit(1)

    app.run(lambda args: run(flag_values, args), flags_parser=parse_or_exit)
