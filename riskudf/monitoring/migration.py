"""Grade migration against the previous run: matrix cells and a summary per slice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from pyspark.sql import Row


@dataclass(frozen=True)
class MigrationRecord:
    slice_key: str | None
    slice_value: str | None
    record_type: str  # cell | summary
    from_grade: str | None
    to_grade: str | None
    notches: int | None
    count: int
    rate: float | None = None
    upgrade_share: float | None = None
    downgrade_share: float | None = None
    stable_share: float | None = None
    moved_over_notches: int | None = None
    moved_over_share: float | None = None
    new_obligors: int | None = None
    exited_obligors: int | None = None


# Long on purpose: cells and per-slice summaries in one pass over the rows.
def migration_records(
    rows: Iterable[Row], grades: list[str], *, notches_threshold: int
) -> list[MigrationRecord]:
    """Cells (matched obligors) with their rate within the from-grade, and one summary per slice.

    ``grades`` is the master scale, best first: a positive notch count is a downgrade.
    """
    position = {grade: i for i, grade in enumerate(grades)}
    slices: dict[tuple[str | None, str | None], list[Row]] = defaultdict(list)
    for row in rows:
        slices[(row["slice_key"], row["slice_value"])].append(row)
    records = []
    for (slice_key, slice_value), cells in sorted(
        slices.items(), key=lambda item: (item[0][0] or "", item[0][1] or "")
    ):
        matched = [c for c in cells if c["from_grade"] is not None and c["to_grade"] is not None]
        from_totals: dict[str, int] = defaultdict(int)
        for cell in matched:
            from_totals[cell["from_grade"]] += int(cell["count"])
        total = sum(from_totals.values())
        moves = {"up": 0, "down": 0, "stable": 0, "far": 0}
        for cell in sorted(
            matched,
            key=lambda c: (position.get(c["from_grade"], 99), position.get(c["to_grade"], 99)),
        ):
            count = int(cell["count"])
            known = cell["to_grade"] in position and cell["from_grade"] in position
            notches = position[cell["to_grade"]] - position[cell["from_grade"]] if known else None
            if notches is not None:  # a grade off the current master scale is not counted
                moves["down" if notches > 0 else "up" if notches < 0 else "stable"] += count
                if abs(notches) > notches_threshold:
                    moves["far"] += count
            records.append(
                MigrationRecord(
                    slice_key,
                    slice_value,
                    "cell",
                    cell["from_grade"],
                    cell["to_grade"],
                    notches,
                    count,
                    rate=count / from_totals[cell["from_grade"]],
                )
            )
        records.append(
            MigrationRecord(
                slice_key,
                slice_value,
                "summary",
                None,
                None,
                None,
                total,
                upgrade_share=moves["up"] / total if total else None,
                downgrade_share=moves["down"] / total if total else None,
                stable_share=moves["stable"] / total if total else None,
                moved_over_notches=notches_threshold,
                moved_over_share=moves["far"] / total if total else None,
                new_obligors=sum(int(c["count"]) for c in cells if c["from_grade"] is None),
                exited_obligors=sum(int(c["count"]) for c in cells if c["to_grade"] is None),
            )
        )
    return records
