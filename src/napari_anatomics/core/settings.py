"""Settings declared once: their type, default, range, help, CLI flag and panel label.

A job's settings (training: :mod:`napari_anatomics.train.recipe`; prediction:
:mod:`napari_anatomics.predict.config`; post-processing:
:mod:`napari_anatomics.segment.config`) are each a tuple of :class:`Setting`.
The job's config dataclass takes its defaults from them and checks its values
against them (:func:`check_values`), the command line builds its options from
them (:func:`add_options`, :func:`given`) and the panels build their fields
from them, so a setting has one name, one default and one range everywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One setting of a job.

    Parameters
    ----------
    name : str
        The config field (and, with dashes, the CLI flag).
    kind : {"int", "float", "str", "bool", "triple", "floats", "names", "path"}
        How the value is typed on the command line: a number, text, a switch,
        ``Z,Y,X`` integers, comma-separated numbers or names, a path.
    default : object
        The default; None means "chosen from the data" when ``auto`` says how,
        else "not set".
    help : str
        One line for ``--help`` and the panel's tooltip.
    low, high : float, optional
        Inclusive range of a number (of each number of a ``floats`` setting).
    choices : tuple, optional
        Allowed values.
    auto : str
        What decides the value when it is left to the data (or the model).
    aliases : tuple of str
        Older CLI flags still accepted.
    metavar : str
    cli : bool
        Offered on the command line.
    low_open : bool
        ``low`` itself is refused (the value must be above it).
    label : str
        The panel's label for it (settings without one have no field there).
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    auto: str = ""
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    cli: bool = True
    low_open: bool = False
    label: str = ""

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--object-crops``."""
        return "--" + self.name.replace("_", "-")

    def span(self, symbols: bool = False) -> str:
        """The range in words (``"in [0, 1]"``, ``"at least 1"``) or symbols (``">= 1"``)."""
        low, high = self.low, self.high
        if high is None:
            if symbols:
                return f"{'>' if self.low_open else '>='} {low:g}"
            return f"{'above' if self.low_open else 'at least'} {low:g}"
        if low is None:
            return f"<= {high:g}" if symbols else f"at most {high:g}"
        return f"in {'(' if self.low_open else '['}{low:g}, {high:g}]"

    def outside(self, number: float) -> bool:
        """True when ``number`` is NaN or outside the range."""
        too_low = self.low is not None and (
            number <= self.low if self.low_open else number < self.low
        )
        too_high = self.high is not None and number > self.high
        return number != number or too_low or too_high

    def check(self, value: Any) -> None:
        """Raise ValueError (naming the setting, the value and the range) if out of range."""
        if value is None:
            return
        if self.choices and value not in self.choices:
            raise ValueError(
                f"{self.name} must be one of {', '.join(map(str, self.choices))}, not {value!r}"
            )
        numbers: list = []
        if self.kind in ("int", "float"):
            numbers = [value]
        elif self.kind == "floats":
            numbers = list(value)
        if any(self.outside(float(n)) for n in numbers):
            raise ValueError(f"{self.name} must be {self.span()}, not {value!r}")

    def parse(self, text: str) -> Any:
        """The value of ``text`` as typed after :attr:`flag`, in range.

        Raises
        ------
        ValueError
            In one line naming the flag: not a number, or out of range.
        """
        if self.kind in ("int", "float"):
            cast = int if self.kind == "int" else float
            try:
                value = cast(text)
            except ValueError:
                kind = "an integer" if cast is int else "a number"
                raise ValueError(f"{self.flag} takes {kind}: {text!r} is not {kind}") from None
            if self.outside(value):
                raise ValueError(f"{self.flag} must be {self.span(symbols=True)}, not {text}")
            return value
        if self.kind == "triple":
            return parse_triple(text)
        if self.kind == "floats":
            try:
                values = [float(v) for v in text.split(",")]
            except ValueError:
                raise ValueError(f"{self.flag} {text!r}: expected numbers like 0.5,0.6") from None
            if any(self.outside(v) for v in values):
                noun = "probability" if (self.low, self.high) == (0.0, 1.0) else "number"
                raise ValueError(f"{self.flag} {text}: each is a {noun} {self.span()}")
            return values
        if self.kind == "names":
            return [part.strip() for part in text.split(",") if part.strip()]
        return text

    def describe_default(self, prefix: str = "") -> str:
        """``--help``'s default: ``" (default: 4000)"``, what decides it, or ``""``."""
        if self.auto:
            return f" (default: {prefix}{self.auto})"
        if self.default is None:
            return ""
        shown = self.default
        if self.kind == "bool":
            shown = "on" if shown else "off"
        elif self.kind == "triple":
            shown = ",".join(map(str, shown))
        return f" (default: {prefix}{shown})"


def parse_triple(text: str) -> tuple[int, int, int]:
    """``Z,Y,X`` positive integers (one number stands for all three)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: expected three integers Z,Y,X") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{text!r}: expected three positive integers Z,Y,X")
    return values  # type: ignore[return-value]


def by_name(settings: Iterable[Setting]) -> dict[str, Setting]:
    """The settings keyed by name."""
    return {s.name: s for s in settings}


def check_values(config: Any, settings: Mapping[str, Setting]) -> None:
    """Raise ValueError naming the first field of dataclass ``config`` outside its range."""
    for f in fields(config):
        if f.name in settings:
            settings[f.name].check(getattr(config, f.name))


def add_option(
    parser: Any, setting: Setting, *, default_prefix: str = "", **overrides: Any
) -> argparse.Action:
    """Add ``setting``'s option to ``parser`` (a parser, group or exclusive group).

    The option defaults to None ("not given", so the config's default, the
    data's or the model's choice applies); ``--help`` shows that default after
    ``default_prefix``. ``overrides`` replace argparse keywords.
    """
    kwargs: dict[str, Any] = {
        "dest": setting.name,
        "default": None,
        "help": (setting.help + setting.describe_default(default_prefix)).replace("%", "%%"),
    }
    if setting.kind == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        if setting.kind != "str" or not setting.choices:
            kwargs["type"] = _argparse_type(setting)
        if setting.choices:
            kwargs["choices"] = setting.choices
        elif setting.metavar:
            kwargs["metavar"] = setting.metavar
    kwargs |= overrides
    return parser.add_argument(setting.flag, *setting.aliases, **kwargs)


def add_options(
    parser: Any, settings: Iterable[Setting], *, default_prefix: str = "", skip: Iterable[str] = ()
) -> None:
    """Add one option per setting offered on the command line (see :func:`add_option`)."""
    skipped = set(skip)
    for setting in settings:
        if setting.cli and setting.name not in skipped:
            add_option(parser, setting, default_prefix=default_prefix)


def given(args: argparse.Namespace, settings: Iterable[Setting]) -> dict[str, Any]:
    """The settings given on the command line (options left out are absent)."""
    values = {s.name: getattr(args, s.name, None) for s in settings if s.cli}
    return {name: value for name, value in values.items() if value is not None}


def _argparse_type(setting: Setting):
    def parse(text: str) -> Any:
        try:
            return setting.parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = setting.kind
    return parse
