"""The Data Check report: findings a biologist can act on, and the numbers behind them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
Kind = Literal["semantic", "instance", "empty"]


@dataclass
class Finding:
    """One result of the check.

    Attributes
    ----------
    severity : {"error", "warning", "info"}
        Errors make the pair unusable until fixed.
    message : str
        What was found and what to do about it, in plain words.
    code : str
        Short machine-readable name ("shape_mismatch", "stray_fragments", ...).
    slice : int or None
        A z index worth looking at.
    position : tuple of int or None
        A (z, y, x) voxel worth looking at.
    """

    severity: Severity
    message: str
    code: str = ""
    slice: int | None = None
    position: tuple[int, int, int] | None = None


@dataclass
class CheckReport:
    """The result of :func:`check`.

    Attributes
    ----------
    findings : list of Finding
    histogram : dict of int or float to int
        Voxel count per label value (background included).
    annotated_slices : list of int
        z indices holding at least one non-zero label.
    kind : {"semantic", "instance", "empty"} or None
        Guess from the values; None when the labels could not be read.
    task : str or None
        The task checked against.
    pieces : dict of int to list of int
        For values painted on several separate pieces: piece sizes (voxels),
        largest first.
    fragments : list of (value, voxels, (z, y, x))
        Stray fragments, with a voxel inside each.
    """

    findings: list[Finding] = field(default_factory=list)
    histogram: dict[Any, int] = field(default_factory=dict)
    annotated_slices: list[int] = field(default_factory=list)
    kind: Kind | None = None
    task: str | None = None
    n_slices: int = 0
    pieces: dict[int, list[int]] = field(default_factory=dict)
    fragments: list[tuple[int, int, tuple[int, int, int]]] = field(default_factory=list)
    n_objects: int | None = None
    descriptions: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """True when no finding is an error."""
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        """Findings of severity "error"."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """Findings of severity "warning"."""
        return [f for f in self.findings if f.severity == "warning"]

    def codes(self) -> set[str]:
        """The codes of all findings."""
        return {f.code for f in self.findings}

    def add(self, severity: Severity, code: str, message: str, **where: Any) -> None:
        """Append a finding."""
        self.findings.append(Finding(severity, message, code, **where))

    def to_text(self, max_values: int = 12) -> str:
        """The report as plain text (what the CLI prints)."""
        lines = ["Data check" + (f" (task: {self.task})" if self.task else "")]
        lines += [f"  {d}" for d in self.descriptions]
        if self.kind is not None:
            objects = f", {self.n_objects} connected objects" if self.n_objects is not None else ""
            n_values = sum(1 for v in self.histogram if v != 0)
            lines.append(f"  labels look {self.kind}: {n_values} values besides 0{objects}")
            lines.append(
                f"  annotated slices: {format_ranges(self.annotated_slices) or 'none'} "
                f"({len(self.annotated_slices)} of {self.n_slices})"
            )
        if self.histogram:
            total = sum(self.histogram.values())
            top = sorted(self.histogram.items(), key=lambda kv: -kv[1])[:max_values]
            shown = ", ".join(f"{format_value(v)}: {n:,} ({100 * n / total:.2g}%)" for v, n in top)
            more = len(self.histogram) - len(top)
            lines.append(
                f"  label values (voxels): {shown}" + (f", ... {more} more" if more > 0 else "")
            )
        lines.append("Findings:")
        for f in sorted(
            self.findings, key=lambda f: ("error", "warning", "info").index(f.severity)
        ):
            where = f" [slice {f.slice}]" if f.slice is not None else ""
            lines.append(f"  {f.severity.upper():7s} {f.message}{where}")
        if self.usable:
            extra = f" with {len(self.warnings)} warning(s)" if self.warnings else ""
            lines.append(f"Verdict: usable{extra}.")
        else:
            lines.append(f"Verdict: NOT usable: fix the {len(self.errors)} error(s) above.")
        return "\n".join(lines)


def format_ranges(indices: Sequence[int]) -> str:
    """'0-3, 7, 9-10' from sorted indices."""
    parts, start, prev = [], None, None
    for i in [*indices, None]:
        if start is not None and (i is None or i != prev + 1):
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ", ".join(parts)


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
