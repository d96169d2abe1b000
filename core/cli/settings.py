"""A setting from a `--config` TOML file, checked as its flag would check it on the command line
(which names exist is the command line's business; this checks one value against its flag's kind)."""

from __future__ import annotations

from collections.abc import Collection


def check_setting(name: str, value: object, path: str, kind: type | None, switch: bool,
                  choices: Collection | None = None) -> object:
    """`value` of setting `name` from file `path`, for a flag of type `kind` (None: a string), an on/off
    `switch`, or one of `choices`; a float flag gets a float. A wrong kind is a one-line ValueError."""
    where = f"{path}: {name} = {value!r}"
    if switch:
        if not isinstance(value, bool):
            raise ValueError(f"{where} is not a boolean: write true or false")
    elif kind in (int, float) and (isinstance(value, bool) or not isinstance(value, kind | int)):
        raise ValueError(f"{where} is not {'an integer' if kind is int else 'a number'}")
    elif kind in (None, str) and not isinstance(value, str):
        raise ValueError(f"{where} is not a string: quote it")
    if choices is not None and value not in choices:
        raise ValueError(f"{where} is not one of {', '.join(map(str, choices))}")
    return float(value) if kind is float else value
