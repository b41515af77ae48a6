"""The software a run scores with, as lineage: library versions in the run log and fingerprints.

A carried-forward row is only as good as the promise that the model would compute it again the
same way; a new torch or transformers may not. The versions go into every row's fingerprint
(see incremental.score_conf_key), so a changed stack rescores every row.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version

LIBRARIES = ("torch", "transformers", "tokenizers", "pyspark", "delta-spark")


def environment(libraries: Iterable[str] = LIBRARIES) -> dict[str, str]:
    """Python's version and each library's installed version ("absent" when not installed)."""
    found = {"python": platform.python_version()}
    for name in libraries:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


class MixedPrecisionError(RuntimeError):
    """One run's scores would come from more than one precision."""


def check_one_precision(
    resolved: Iterable[str], carried: Iterable[str] = (), *, run_id: str
) -> str | None:
    """The one precision of a run's scores: what its workers resolved (``resolved``) and what
    the rows it carries forward were scored at (``carried``); None when nothing was scored.
    ``precision: auto`` resolves per host, so hosts with different hardware could mix."""
    mine, theirs = set(resolved), set(carried)
    if len(mine | theirs) > 1:
        raise MixedPrecisionError(
            f"run {run_id}: scores would mix precisions (scored now: {sorted(mine)}; carried "
            f"forward: {sorted(theirs)}); pin scoring.precision, or run --mode full on hosts "
            "that resolve auto alike"
        )
    return next(iter(mine | theirs), None)


def describe(env: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(env.items()))
