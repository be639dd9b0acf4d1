"""The bench's results: measured rows, improvement over FOMM, and their text forms.

One table in Markdown, CSV, JSON and LaTeX. Published numbers (`published.py`) are written as a
separate table with its own title and never enter the measured one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from kptoolkit.bench.published import PUBLISHED_TAICHI, TITLE, PublishedRow


@attrs.frozen
class Column:
    """A numeric column: key in the row, header, number of digits, and which way is better."""

    key: str
    header: str
    digits: int
    lower_is_better: bool | None  # None: a cost column with no improvement figure


METRIC_COLUMNS = (
    Column("l1", "L1", 4, True),
    Column("akd", "AKD", 3, True),
    Column("mkr", "MKR", 3, True),
    Column("aed", "AED", 3, True),
    Column("psnr", "PSNR", 2, False),
    Column("ssim", "SSIM", 3, False),
)
COST_COLUMNS = (
    Column("params_m", "Params (M)", 2, None),
    Column("ms_per_frame", "ms/frame", 1, None),
    Column("train_minutes", "Train (min)", 1, None),
)
COLUMNS = METRIC_COLUMNS + COST_COLUMNS
REFERENCE_GENERATOR = "fomm"


@attrs.define
class ResultRow:
    """The measured outcome of one trained masker x generator pair."""

    method: str
    role: str  # "baseline" or "variant"
    masker: str
    generator: str
    metrics: dict[str, float]
    params: int
    ms_per_frame: float
    train_seconds: float
    steps: int

    def value(self, key: str) -> float:
        """The number of column `key` (NaN when it was not measured)."""
        if key == "params_m":
            return self.params / 1e6
        if key == "ms_per_frame":
            return self.ms_per_frame
        if key == "train_minutes":
            return self.train_seconds / 60.0
        return float(self.metrics.get(key, math.nan))


def improvement(row: ResultRow, reference: ResultRow) -> dict[str, float]:
    """Relative improvement of `row` over `reference` per metric, in percent (positive = better).

    Lower-is-better metrics: (reference - row) / reference; higher-is-better: (row - ref) / ref.
    """
    found = {}
    for column in METRIC_COLUMNS:
        mine, theirs = row.value(column.key), reference.value(column.key)
        if math.isnan(mine) or math.isnan(theirs) or theirs == 0:
            found[column.key] = math.nan
            continue
        change = (theirs - mine) if column.lower_is_better else (mine - theirs)
        found[column.key] = 100.0 * change / abs(theirs)
    return found


def improvements_over_fomm(rows: Sequence[ResultRow]) -> dict[str, dict[str, float]]:
    """Per variant, its improvement over the FOMM baseline row (empty without that row)."""
    reference = next(
        (r for r in rows if r.role == "baseline" and r.generator == REFERENCE_GENERATOR), None
    )
    if reference is None:
        return {}
    return {r.method: improvement(r, reference) for r in rows if r.role == "variant"}


def _number(value: float, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _percent(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "0.0%" if round(value, 1) == 0 else f"{value:+.1f}%"


def _table_cells(
    rows: Sequence[ResultRow], gains: dict[str, dict[str, float]]
) -> tuple[list[str], list[list[str]]]:
    header = ["Method", *(c.header for c in COLUMNS)]
    body = [[r.method, *(_number(r.value(c.key), c.digits) for c in COLUMNS)] for r in rows]
    for method, gain in gains.items():
        cells = [_percent(gain[c.key]) for c in METRIC_COLUMNS]
        body.append([f"Improvement over FOMM ({method})", *cells, *("" for _ in COST_COLUMNS)])
    return header, body


def markdown(
    header: Sequence[str], body: Sequence[Sequence[str]], text_columns: Sequence[int] = (0,)
) -> str:
    """A GitHub Markdown table: `text_columns` left-aligned, numbers right-aligned."""
    align = [":---" if index in text_columns else "---:" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def results_markdown(rows: Sequence[ResultRow]) -> str:
    """The measured table with its improvement-over-FOMM rows, in Markdown."""
    return markdown(*_table_cells(rows, improvements_over_fomm(rows)))


def results_csv(rows: Sequence[ResultRow]) -> str:
    """One line per measured row (full precision), then the improvement rows in percent."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "kind", "masker", "generator", *(c.key for c in COLUMNS), "steps"])
    for r in rows:
        values = [_csv_number(r.value(c.key)) for c in COLUMNS]
        writer.writerow([r.method, r.role, r.masker, r.generator, *values, r.steps])
    for method, gain in improvements_over_fomm(rows).items():
        values = [_csv_number(gain[c.key]) for c in METRIC_COLUMNS]
        blanks = ["" for _ in COST_COLUMNS]
        writer.writerow([method, "improvement_over_fomm_percent", "", "", *values, *blanks, ""])
    return buffer.getvalue()


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&")):
        text = text.replace(char, escaped)
    return text


def latex(header: Sequence[str], body: Sequence[Sequence[str]], caption: str) -> str:
    """A booktabs table environment."""
    spec = "l" + "r" * (len(header) - 1)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_latex_escape(cell) for cell in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def results_latex(rows: Sequence[ResultRow], caption: str) -> str:
    """The measured table with its improvement rows, as LaTeX (booktabs)."""
    return latex(*_table_cells(rows, improvements_over_fomm(rows)), caption)


def _published_cells(
    published: Sequence[PublishedRow],
) -> tuple[list[str], list[list[str]]]:
    header = ["Method", "L1", "AKD", "MKR", "AED", "Source"]
    body = [
        [
            p.method,
            f"{p.l1:.3f}",
            f"{p.akd:.3f}",
            "-" if p.mkr is None else f"{p.mkr:.3f}",
            f"{p.aed:.3f}",
            p.source,
        ]
        for p in published
    ]
    return header, body


def published_markdown(published: Sequence[PublishedRow] = PUBLISHED_TAICHI) -> str:
    """The published Tai-Chi-HD rows under their own title."""
    header, body = _published_cells(published)
    return f"### {TITLE}\n\n" + markdown(header, body, text_columns=(0, len(header) - 1))


def published_latex(published: Sequence[PublishedRow] = PUBLISHED_TAICHI) -> str:
    """The published Tai-Chi-HD rows as their own LaTeX table."""
    return latex(*_published_cells(published), TITLE)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def results_json(rows: Sequence[ResultRow], context: dict[str, Any]) -> str:
    """Rows, improvements, context (machine, profile, floors) and, apart, the published rows."""
    payload = {
        **context,
        "rows": [attrs.asdict(r) for r in rows],
        "improvement_over_fomm_percent": improvements_over_fomm(rows),
        "published_taichi_256": {
            "note": TITLE,
            "rows": [attrs.asdict(p) for p in PUBLISHED_TAICHI],
        },
    }
    return json.dumps(_json_safe(payload), indent=2) + "\n"


def write_text(path: Path, text: str) -> Path:
    """Write `text` atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
