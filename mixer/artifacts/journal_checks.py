"""Checks of a plan's journal (amendments and skips): anyone could have written it."""

from __future__ import annotations

from mixer.artifacts.checks import _require, count, printable


def check_journal(plan) -> None:
    """Amendments and skips: in order inside the plan, naming its sources, ranges that fit."""
    names = {s.name for s in plan.sources}
    previous = 0
    for i, e in enumerate(plan.journal):
        at = f"plan.journal[{i}]"
        _require(e.kind in ("amend", "skip"), f"{at}.kind", f"{e.kind[:40]!r} is unknown")
        _require(previous <= e.at <= plan.total, f"{at}.at", f"{e.at} is out of order")
        for name, (k0, k1) in (e.passed or {}).items():
            _require(name in names, f"{at}.passed", f"{name[:70]!r} is not a source of the plan")
            count(k0, f"{at}.passed.{name}")
            count(k1, f"{at}.passed.{name}", k0 + 1)
        for name in (*(e.weights or {}), *e.added):
            _require(name in names, f"{at}", f"{name[:70]!r} is not a source of the plan")
        for key in ("note", "time", "recipe"):
            if getattr(e, key) is not None:
                printable(getattr(e, key), f"{at}.{key}")
        previous = e.at
    _require(not plan.journal or plan.base is not None, "plan.base", "missing beside a journal")
