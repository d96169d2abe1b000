"""Run configuration files: TOML in (`--config run.toml`, read with Python's own `tomllib`), TOML out
(the effective settings of every training run, saved as `config.toml` in its run folder, so
`--config runs/X/config.toml` repeats the run).

A file is a flat table of settings named as the flags are, with `_` or `-` (`n_layer = 4` is
`--n-layer 4`); tables such as `[model]` or `[train]` may group them and are only for the reader.
Which names are valid is the command line's business: this module only reads and writes values.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

CONFIG_FILE = "config.toml"
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}


def read_run_config(path: str | Path) -> dict[str, object]:
    """The settings of a TOML file, tables flattened, names with `_`; a bad file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist: pass a TOML file, e.g. configs/default.toml")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        fix = "fix it or start from configs/default.toml"
        raise ValueError(f"config file {path} is not valid TOML ({err}): {fix}") from None
    flat: dict[str, object] = {}
    for key, value in table.items():
        for name, v in (value.items() if isinstance(value, dict) else [(key, value)]):
            name = name.replace("-", "_")
            if name in flat:
                raise ValueError(f"config file {path} sets {name} twice: keep one")
            flat[name] = v
    return flat


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    return f"\\u{ord(c):04x}" if c < " " or c == "\x7f" else c


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)  # repr round-trips exactly
    if isinstance(value, str):  # a TOML basic string: quote, backslash and control characters escaped
        return '"' + "".join(_escape(c) for c in value) + '"'
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def write_run_config(path: str | Path, groups: dict[str, dict[str, object]], header: str = "") -> Path:
    """Write `{table: {name: value}}` as TOML; None values ("not set") are left out."""
    lines = [f"# {line}" for line in header.splitlines()]
    for table, values in groups.items():
        lines += ["", f"[{table}]"]
        lines += [f"{name} = {_toml_value(v)}" for name, v in values.items() if v is not None]
    path = Path(path)
    path.write_text("\n".join(lines).lstrip("\n") + "\n", encoding="utf-8")
    return path
