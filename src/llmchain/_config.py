"""Chain configuration: TOML or dict → validated specs, with errors that say how to fix them.

::

    timeout_s = 60                 # total deadline per call (optional)
    [transport]
    use = "openai"
    api_key_env = "OPENAI_API_KEY" # secrets come from the environment, never from the file
    [[stages]]                     # first entry is outermost
    use = "retry"
    name = "retry"                 # optional; needed to use one stage type twice
    enabled = true
    max_attempts = 4               # everything else is the stage's options
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._exceptions import ConfigError
from .plugins import Registered

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_LEVEL_KEYS = ("timeout_s", "transport", "stages", "embeddings")
SECRET_NAMES = ("api_key", "apikey", "key", "password", "secret", "token", "authorization")


class StageSpec(BaseModel):
    """One ``[[stages]]`` entry: which stage, under what name, with which options."""

    model_config = ConfigDict(frozen=True)

    use: str
    name: str
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class TransportSpec(BaseModel):
    """The ``[transport]`` table."""

    model_config = ConfigDict(frozen=True)

    use: str = "mock"
    options: dict[str, Any] = Field(default_factory=dict)


class ChainConfig(BaseModel):
    """A whole chain: transport, ordered stages, default total timeout."""

    model_config = ConfigDict(frozen=True)

    transport: TransportSpec = Field(default_factory=TransportSpec)
    stages: tuple[StageSpec, ...] = ()
    timeout_s: float | None = None
    source: str = "<dict>"
    embeddings: dict[str, Any] = Field(default_factory=dict)  # the [embeddings] table


def load_config(source: str | Path | Mapping[str, Any]) -> ChainConfig:
    """Read a TOML file (path) or a dict into a ChainConfig, or raise ConfigError."""
    if isinstance(source, Mapping):
        return parse_config(source, "<dict>")
    path = Path(source)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position "
                          f"{exc.start} cannot be decoded); save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path))


def parse_config(data: Mapping[str, Any], where: str) -> ChainConfig:
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level key(s) {unknown}; expected only {list(TOP_LEVEL_KEYS)}"
        )
    timeout = data.get("timeout_s")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout) or timeout <= 0
    ):
        raise ConfigError(f"{where}: timeout_s must be a finite number of seconds > 0, got {timeout!r}")
    transport = parse_transport_table(data.get("transport", {}), where)
    stages_data = data.get("stages", [])
    if not isinstance(stages_data, list):
        raise ConfigError(
            f"{where}: 'stages' must be an array of tables ([[stages]]), got {type(stages_data).__name__}"
        )
    stages = tuple(parse_stage_entry(entry, i, where) for i, entry in enumerate(stages_data))
    # stage names are checked where stages are built (_build.build_stages), for code too
    embeddings = data.get("embeddings", {})
    if not isinstance(embeddings, Mapping):
        raise ConfigError(f"{where}: [embeddings] must be a table, got {type(embeddings).__name__}")
    if embeddings:
        from ._embed import embedding_options

        embedding_options(embeddings, where)  # errors now, with the file's name
    return ChainConfig(transport=transport, stages=stages, timeout_s=timeout, source=where,
                       embeddings=dict(embeddings))


def parse_transport_table(data: Any, where: str) -> TransportSpec:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: [transport] must be a table, got {type(data).__name__}")
    options = dict(data)
    use = options.pop("use", "mock")
    if not isinstance(use, str):
        raise ConfigError(f"{where}: [transport] use must be a string naming a transport, got {use!r}")
    _reject_secrets(options, f"{where}: [transport] ({use})")
    _reject_non_finite(options, f"{where}: [transport] ({use})")
    return TransportSpec(use=use, options=options)


def parse_stage_entry(entry: Any, index: int, where: str) -> StageSpec:
    if isinstance(entry, str):
        entry = {"use": entry}
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: stages[{index}] must be a table, got {type(entry).__name__}")
    options = dict(entry)
    use = options.pop("use", None)
    if not isinstance(use, str) or not use:
        raise ConfigError(f'{where}: stages[{index}] needs `use = "<stage name>"`')
    name = options.pop("name", use)
    enabled = options.pop("enabled", True)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: stages[{index}] ({use}): name must be a non-empty string")
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: stages[{index}] ({use}): enabled must be true or false, got {enabled!r}")
    _reject_secrets(options, f"{where}: stages[{index}] ({name})")
    _reject_non_finite(options, f"{where}: stages[{index}] ({name})")
    return StageSpec(use=use, name=name, enabled=enabled, options=options)


def _reject_secrets(options: Mapping[str, Any], where: str) -> None:
    for key, value in options.items():
        if key.lower() in SECRET_NAMES and isinstance(value, str):
            raise ConfigError(
                f"{where}: option {key!r} holds a literal secret; secrets never go in config. "
                f'Put it in an environment variable and name that variable with `{key}_env = "VAR"`.'
            )


def _reject_non_finite(value: Any, where: str, path: str = "") -> None:
    """NaN and infinity (TOML has ``nan`` and ``inf``) pass most range checks and then break
    every call: refuse them by name, wherever they are nested."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: option {path} is {value}; numbers must be finite")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _reject_non_finite(item, where, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _reject_non_finite(item, where, f"{path}[{i}]")


def build_options(registered: Registered, options: Mapping[str, Any], where: str) -> BaseModel | None:
    """Validate ``options`` against the factory's Options model, with a precise error."""
    model = registered.options_model
    if model is None:
        if options:
            raise ConfigError(f"{where}: {registered.name!r} takes no options, got {sorted(options)}")
        return None
    unknown = sorted(set(options) - set(model.model_fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {unknown} for {registered.name!r}; "
            f"valid options: {sorted(model.model_fields)}"
        )
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(
            f"option {'.'.join(str(p) for p in err['loc']) or '<options>'}: {err['msg']}"
            f" (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None


def options_table(registered: Registered) -> list[tuple[str, str, str]]:
    """(option, type, default) rows for `llmchain stages` and the docs."""
    model = registered.options_model
    if model is None:
        return []
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        type_name = annotation.__name__ if isinstance(annotation, type) else str(annotation)
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((name, type_name.replace("typing.", ""), default))
    return rows
