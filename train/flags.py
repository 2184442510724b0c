"""absl flags generated from a config dataclass (`train.config`), one declaration per setting.

Only entry points parse flags; library code receives config dataclasses. Each entry point parses
into its own `flags.FlagValues`, so several entry points can be driven in one process (tests call
`train.<system>.main(argv)`).
"""
import dataclasses
import types
import typing

from absl import flags

from tools import cli
from train.config import REQUIRED_FIELDS, setting_error


def _field_kind(field):
    """(kind, item type) of a dataclass field: kind is bool, int, float, str or tuple."""
    annotation = field.type
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        return tuple, (typing.get_args(annotation) or (str,))[0]
    if annotation is tuple:
        return tuple, str
    if annotation in (bool, int, float, str):
        return annotation, None
    raise TypeError(f"Config field {field.name!r} has a type flags cannot carry: {field.type}")


def define_flags(config_class, flag_values):
    """Defines one flag per field of `config_class` in `flag_values` (name, default, help and
    choices from the field; see `train.config.setting`)."""
    for field in dataclasses.fields(config_class):
        kind, _ = _field_kind(field)
        help_text = field.metadata.get("help") or field.name
        choices = field.metadata.get("choices")
        default = field.default
        common = dict(name=field.name, help=help_text, flag_values=flag_values)
        if choices:
            flags.DEFINE_enum(default=default, enum_values=list(choices), **common)
        elif kind is bool:
            flags.DEFINE_bool(default=default, **common)
        elif kind is int:
            flags.DEFINE_integer(default=default, **common)
        elif kind is float:
            flags.DEFINE_float(default=default, **common)
        elif kind is tuple and field.metadata.get("multi"):
            flags.DEFINE_multi_string(default=list(default or ()), **common)
        elif kind is tuple:
            flags.DEFINE_list(default=None if default is None else list(default), **common)
        else:
            flags.DEFINE_string(default=default, **common)
        if kind in (int, float) or field.metadata.get("directory"):
            _validate(field, flag_values)
    for name in REQUIRED_FIELDS:
        flags.mark_flag_as_required(name, flag_values=flag_values)


def _validate(field, flag_values):
    """Registers `train.config.setting_error` for the field's flag: checked when parsing."""
    def check(value):
        error = setting_error(field, value)
        if error:
            raise flags.ValidationError(error)
        return True

    flags.register_validator(field.name, check, flag_values=flag_values)


def config_from_flags(config_class, flag_values):
    """`config_class` filled from the parsed `flag_values`, field by field (lists as tuples)."""
    values = {}
    for field in dataclasses.fields(config_class):
        value = flag_values[field.name].value
        kind, item_type = _field_kind(field)
        if kind is tuple and value is not None:
            value = tuple(item_type(item) for item in value)
        values[field.name] = value
    return config_class(**values)


def parse_config(config_class, argv, absl_flags=False):
    """Parses `argv` (argv[0] is the program) into a `config_class` (`tools.cli.parse`: absl's
    own flags accepted, any other unknown flag or positional argument an error, `--help`
    printed). Raises `flags.Error` with absl's message for bad flags."""
    flag_values = cli.new_flags(lambda values: define_flags(config_class, values))
    args = cli.parse(flag_values, argv, absl_flags=absl_flags)
    if args:
        raise flags.Error(f"Unexpected arguments: {' '.join(args)} (every setting is a --flag)")
    return config_from_flags(config_class, flag_values)
