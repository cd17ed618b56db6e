"""The cost report as a rich table, JSON or markdown."""

from __future__ import annotations

import json

from rich.table import Table

from flowspec.report.costs import CostReport, fmt_bytes, fmt_flops, fmt_time, largest_batch_note

COLUMNS = ("layer", "kind", "input", "params", "fwd FLOPs", "inv FLOPs", "logdet FLOPs",
           "train act.", "fwd time", "bound")


def _cells(report: CostReport, row) -> list[str]:
    logdet = fmt_flops(row.flops_logdet) + (" (!)" if row.logdet_dominates else "")
    cells = [row.name, row.kind, "x".join(map(str, row.in_shape)), f"{row.params:,}",
             fmt_flops(row.flops_forward), fmt_flops(row.flops_inverse), logdet,
             fmt_bytes(row.train_bytes), fmt_time(row.time_forward), row.bottleneck]
    if report.measured_train_step is not None:
        cells.append(fmt_time(row.measured_forward) if row.measured_forward is not None else "")
    return cells


def _totals(report: CostReport) -> list[str]:
    cells = ["total", "", "", f"{report.params:,}", fmt_flops(report.flops_forward),
             fmt_flops(report.flops_inverse), fmt_flops(report.flops_logdet),
             fmt_bytes(report.train_activation_bytes), fmt_time(report.time_forward), ""]
    if report.measured_train_step is not None:
        measured = [r.measured_forward for r in report.rows if r.measured_forward is not None]
        cells.append(fmt_time(sum(measured)))
    return cells


def summary_lines(report: CostReport) -> list[str]:
    lines = [
        f"params {report.params:,}; at batch {report.batch}: forward {fmt_flops(report.flops_forward)}FLOP, "
        f"inverse {fmt_flops(report.flops_inverse)}FLOP, log-det {fmt_flops(report.flops_logdet)}FLOP",
        f"training step: {fmt_time(report.time_train_step)} roofline on {report.device} ({report.dtype}): "
        f"forward {fmt_time(report.time_forward)} + backward {fmt_time(report.time_backward)} "
        f"(2 x the forward FLOPs and bytes + a backward latency per op); sampling pass: {fmt_time(report.time_sample)}",
        f"memory at batch {report.batch}: training {fmt_bytes(report.train_bytes)} (activations "
        f"{fmt_bytes(report.train_activation_bytes)} + weights, grads, Adam state); sampling "
        f"{fmt_bytes(report.sample_bytes)}",
        largest_batch_note(report),
    ]
    if report.measured_train_step is not None:
        ratio = report.measured_train_step / report.time_train_step
        lines.append(f"measured training step: {fmt_time(report.measured_train_step)} "
                     f"(measured / predicted = {ratio:.2f})")
    return lines + [f"note: {note}" for note in report.notes]


def _columns(report: CostReport) -> tuple[str, ...]:
    return COLUMNS + (("measured fwd",) if report.measured_train_step is not None else ())


def to_table(report: CostReport) -> Table:
    table = Table(title=f"{report.spec_name}: cost at batch {report.batch} on {report.device}")
    for column in _columns(report):
        table.add_column(column, justify="left" if column in ("layer", "kind", "input", "bound") else "right")
    for row in report.rows:
        table.add_row(*_cells(report, row))
    table.add_section()
    table.add_row(*_totals(report))
    return table


def to_text(report: CostReport) -> str:
    """The table as plain text, every cell in full and columns aligned with spaces, then the
    summary: what ``flowspec report`` prints into a pipe or a file, where a terminal's width
    does not apply (rich would fit the table to 80 columns and cut every cell)."""
    columns = _columns(report)
    rows = [list(columns)] + [_cells(report, row) for row in report.rows] + [_totals(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    left = [c in ("layer", "kind", "input", "bound") for c in columns]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if l else cell.rjust(w) for cell, w, l in zip(cells, widths, left)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [f"{report.spec_name}: cost at batch {report.batch} on {report.device} ({report.dtype})", "",
             line(rows[0]), rule, *(line(r) for r in rows[1:-1]), rule, line(rows[-1]), ""]
    return "\n".join(lines + summary_lines(report)) + "\n"


def to_markdown(report: CostReport) -> str:
    columns = _columns(report)
    lines = [f"### {report.spec_name}: cost at batch {report.batch} on {report.device} ({report.dtype})", "",
             "| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in ("layer", "kind", "input", "bound") else "---:" for c in columns) + "|"]
    for row in report.rows:
        lines.append("| " + " | ".join(_cells(report, row)) + " |")
    lines.append("| " + " | ".join(f"**{c}**" if c else "" for c in _totals(report)) + " |")
    lines.append("")
    lines += [f"- {line}" for line in summary_lines(report)]
    return "\n".join(lines) + "\n"


def to_json(report: CostReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
