"""The bench's results table in text: Markdown, CSV, LaTeX and JSON, and the published table
apart (its own title; published numbers never enter the measured table)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from kptoolkit.bench.report.published import PUBLISHED_TAICHI, TITLE, PublishedRow
from kptoolkit.bench.report.results import (
    COST_COLUMNS,
    ResultRow,
    Table,
)
from kptoolkit.metrics import aggregate
from kptoolkit.utils.atomic import atomic_write_text


def _number(value: float, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _cell(estimate: aggregate.Estimate, digits: int, pm: str) -> str:
    if math.isnan(estimate.value):
        return "-"
    text = f"{estimate.value:.{digits}f}"
    if math.isfinite(estimate.half_width):
        text += f" {pm} {estimate.half_width:.{digits}f}"
    if estimate.seeds > 1 and math.isfinite(estimate.seed_std):
        text += f" (sd {estimate.seed_std:.{digits}f})"
    return text


def _percent(change: aggregate.Change) -> str:
    if math.isnan(change.value):
        return "-"
    text = "0.0%" if round(change.value, 1) == 0 else f"{change.value:+.1f}%"
    if math.isfinite(change.low):
        low, high = (round(bound, 1) + 0.0 for bound in (change.low, change.high))  # no -0.0
        text += f" [{low:+.1f}, {high:+.1f}]"
        if change.significant:
            text += "*"
    return text


MOTION_LABEL = "Gain over its frame-0 control"


def _table_cells(table: Table, pm: str = "±") -> tuple[list[str], list[list[str]]]:
    header = ["Method", *(c.header for c in table.columns)]
    body = []
    for row in table.rows:
        metrics = [_cell(table.estimate(row, c.key), c.digits, pm) for c in table.metric_columns]
        costs = [
            "-" if row.role == "floor" else _number(row.value(c.key), c.digits)
            for c in COST_COLUMNS
        ]
        body.append([row.method, *metrics, *costs])
    for title, by_method in (
        ("Improvement over FOMM", table.improvements),
        (MOTION_LABEL, table.motion),
    ):
        for method, changes in by_method.items():
            cells = [_percent(changes[c.key]) for c in table.metric_columns]
            body.append([f"{title} ({method})", *cells, *("" for _ in COST_COLUMNS)])
    return header, body


def markdown(
    header: Sequence[str], body: Sequence[Sequence[str]], text_columns: Sequence[int] = (0,)
) -> str:
    """A GitHub Markdown table: `text_columns` left-aligned, numbers right-aligned."""
    align = [":---" if index in text_columns else "---:" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def table_notes(table: Table) -> str:
    """What the ± , sd and improvement intervals mean, in one paragraph."""
    notes = [f"{table.settings.describe()}, {table.videos} test videos."]
    if table.several_seeds:
        notes.append(
            "With several seeds a cell is the mean over seeds, its interval resamples the "
            "videos for all seeds at once, and (sd x) is the standard deviation across seeds."
        )
    if table.improvements:
        notes.append(
            "Improvement rows: relative change against FOMM (positive = better) with its "
            f"{table.settings.confidence:.0%} paired-bootstrap interval (the same resampled "
            "videos for both rows); * marks an interval that excludes zero."
        )
    if table.motion:
        notes.append(
            f"{MOTION_LABEL} rows: the same model's relative change against itself driven by "
            "frame 0 for every frame (positive = better, same paired interval): what the "
            "driving frames' motion buys it (0.0% for a model whose output does not depend "
            "on them)."
        )
    return " ".join(notes)


def results_markdown(table: Table) -> str:
    """The measured table with its improvement-over-FOMM rows, in Markdown, then its notes."""
    return markdown(*_table_cells(table)) + "\n\n" + table_notes(table)


def results_csv(table: Table) -> str:
    """One line per row (full precision, interval bounds and seed spread in their own
    columns), then the improvement and gain rows in percent with their paired intervals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    metric_keys = [
        f"{c.key}{suffix}" for c in table.metric_columns for suffix in ("", *CSV_SUFFIXES)
    ]
    cost_keys = [c.key for c in COST_COLUMNS]
    writer.writerow(["method", "kind", "masker", "generator", *metric_keys, *cost_keys])
    for r in table.rows:
        values = []
        for column in table.metric_columns:
            found = table.estimate(r, column.key)
            values += [_csv_number(v) for v in (found.value, found.low, found.high)]
            values.append(_csv_number(found.seed_std))
        costs = [_csv_number(r.value(c.key)) for c in COST_COLUMNS]
        writer.writerow([r.method, r.role, r.masker, r.generator, *values, *costs])
    blanks = ["" for _ in COST_COLUMNS]
    for kind, by_method in (
        ("improvement_over_fomm_percent", table.improvements),
        (MOTION_KEY, table.motion),
    ):
        for method, changes in by_method.items():
            values = []
            for column in table.metric_columns:
                change = changes[column.key]
                values += [_csv_number(v) for v in (change.value, change.low, change.high)]
                values.append("")
            writer.writerow([method, kind, "", "", *values, *blanks])
    return buffer.getvalue()


CSV_SUFFIXES = ("_ci_low", "_ci_high", "_seed_std")


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


def results_latex(table: Table, caption: str) -> str:
    """The measured table with its improvement rows, as LaTeX (booktabs); ± is `$\\pm$`."""
    header, body = _table_cells(table, pm=PM_PLACEHOLDER)
    notes = table_notes(table).replace("±", PM_PLACEHOLDER)
    text = latex(header, body, f"{caption}. {notes}")
    return text.replace(PM_PLACEHOLDER, r"$\pm$")


PM_PLACEHOLDER = "\x00pm\x00"  # survives escaping, becomes $\\pm$


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


def _row_json(table: Table, row: ResultRow) -> dict[str, Any]:
    metrics, intervals, spread = {}, {}, {}
    for column in table.metric_columns:
        found = table.estimate(row, column.key)
        if math.isnan(found.value):
            continue
        metrics[column.key] = found.value
        intervals[column.key] = [found.low, found.high]
        spread[column.key] = found.seed_std
    return {
        "method": row.method,
        "role": row.role,
        "masker": row.masker,
        "generator": row.generator,
        "seeds": list(row.seeds),
        "metrics": metrics,
        "interval": intervals,
        "seed_std": spread,
        "params": row.params,
        "ms_per_frame": row.ms_per_frame,
        "train_seconds": row.train_seconds,
        "steps": row.steps,
    }


MOTION_KEY = "gain_over_frame0_control_percent"


def _changes_json(
    changes: dict[str, dict[str, aggregate.Change]],
) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        method: {
            key: {**attrs.asdict(change), "significant": change.significant}
            for key, change in by_metric.items()
        }
        for method, by_metric in changes.items()
    }


def results_json(table: Table, context: dict[str, Any]) -> str:
    """Rows with intervals and seed spread, paired improvements, context (machine, profile,
    floors, how scores are averaged) and, apart, the published rows."""
    payload = {
        **context,
        "uncertainty": {**attrs.asdict(table.settings), "videos": table.videos},
        "rows": [_row_json(table, r) for r in table.rows],
        "improvement_over_fomm_percent": _changes_json(table.improvements),
        MOTION_KEY: _changes_json(table.motion),
        "published_taichi_256": {
            "note": TITLE,
            "rows": [attrs.asdict(p) for p in PUBLISHED_TAICHI],
        },
    }
    return json.dumps(_json_safe(payload), indent=2) + "\n"


def write_text(path: Path, text: str) -> Path:
    """Write `text` atomically (temp file, then rename)."""
    return atomic_write_text(path, text)
