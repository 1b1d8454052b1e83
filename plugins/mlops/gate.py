"""Validation-gate rules: parse, check at DAG parse time, evaluate candidate vs champion.

A rule set maps a metric name to comparators::

    {"rmse": {"max": 70, "max_regression": 0.02}, "r2": {"min": 0.3, "min_improvement": 0.0}}

Direction: each metric is *lower-is-better* or *higher-is-better*. It is ``direction``
("lower" / "higher") when given, else implied by ``max`` (lower) or ``min`` (higher), else by the
name (rmse, mse, mae, mape, loss, error, log_loss... are lower; everything else higher).

With ``improvement = champion - candidate`` for lower-is-better metrics and
``candidate - champion`` for higher-is-better ones (positive = the candidate is better):

=====================  ================================================================
``min``                absolute: ``candidate >= min``
``max``                absolute: ``candidate <= max``
``max_regression``     relative: ``-improvement <= max_regression * |champion|``
                       (0.02 = the candidate may be at most 2 % worse than the champion)
``max_regression_abs`` absolute: ``-improvement <= max_regression_abs`` (in metric units)
``min_improvement``    relative: ``improvement >= min_improvement * |champion|``
                       (0.0 = at least as good as the champion; 0.01 = 1 % better)
``min_improvement_abs`` absolute: ``improvement >= min_improvement_abs`` (in metric units)
=====================  ================================================================

Comparisons allow a floating-point tolerance of 1e-9 (relative to the magnitudes involved), so
a bound that is met exactly on paper (60 -> 61.2 with ``max_regression`` 0.02) passes.
Relative comparators scale by ``|champion|`` (no division, so a champion of 0 works: any
regression then fails ``max_regression`` and any improvement passes ``min_improvement 0``).
Comparisons with the champion apply only when there is a champion; otherwise only ``min`` and
``max`` are checked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ABSOLUTE = ("min", "max")
RELATIVE = ("max_regression", "max_regression_abs", "min_improvement", "min_improvement_abs")
COMPARATORS = (*ABSOLUTE, *RELATIVE)
LOWER_IS_BETTER_HINTS = ("rmse", "mse", "mae", "mape", "loss", "error", "err", "latency", "logloss")


class GateRuleError(ValueError):
    """The rules themselves are invalid (unknown comparator, non-numeric bound...)."""


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateRuleError(f"{where} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise GateRuleError(f"{where} must be finite, got {value!r}")
    return float(value)


def direction_of(metric: str, rule: Mapping[str, Any]) -> str:
    """'lower' or 'higher': which way the metric gets better (see module docstring)."""
    if "direction" in rule:
        return rule["direction"]
    if "max" in rule and "min" not in rule:
        return "lower"
    if "min" in rule and "max" not in rule:
        return "higher"
    name = metric.lower()
    return "lower" if any(hint in name for hint in LOWER_IS_BETTER_HINTS) else "higher"


def parse_rules(rules: Any) -> dict[str, dict[str, Any]]:
    """Validate ``rules`` (a dict or its JSON text) and return them with ``direction`` filled in."""
    if isinstance(rules, str):
        try:
            rules = json.loads(rules)
        except json.JSONDecodeError as exc:
            raise GateRuleError(f"rules is a string but not JSON: {exc}") from exc
    if not isinstance(rules, Mapping) or not rules:
        raise GateRuleError(
            f"rules must be a non-empty mapping of metric -> {{comparator: bound}}, got {rules!r}"
        )
    parsed: dict[str, dict[str, Any]] = {}
    for metric, rule in rules.items():
        if not isinstance(metric, str) or not metric:
            raise GateRuleError(f"metric names must be non-empty strings, got {metric!r}")
        if not isinstance(rule, Mapping) or not rule:
            raise GateRuleError(f"rule for metric {metric!r} must be a non-empty mapping, got {rule!r}")
        out: dict[str, Any] = {}
        for key, bound in rule.items():
            if key == "direction":
                if bound not in ("lower", "higher"):
                    raise GateRuleError(f"{metric}.direction must be 'lower' or 'higher', got {bound!r}")
                continue
            if key not in COMPARATORS:
                raise GateRuleError(
                    f"unknown comparator {key!r} for metric {metric!r}; use one of: "
                    f"{', '.join(COMPARATORS)}, direction"
                )
            out[key] = _number(bound, f"{metric}.{key}")
            if key.startswith("max_regression") and out[key] < 0:
                raise GateRuleError(f"{metric}.{key} must be >= 0 (an allowed worsening), got {bound!r}")
        if "min" in out and "max" in out and out["min"] > out["max"]:
            raise GateRuleError(f"{metric}: min {out['min']} is above max {out['max']}")
        out["direction"] = direction_of(metric, rule)
        parsed[metric] = out
    return parsed


def parse_metrics(metrics: Any, what: str) -> dict[str, float] | None:
    """Metrics given to the operator (dict or JSON text) as floats; None when not given."""
    if metrics is None or metrics == "":
        return None
    if isinstance(metrics, str):
        try:
            metrics = json.loads(metrics)
        except json.JSONDecodeError as exc:
            raise GateRuleError(f"{what} is a string but not JSON: {exc}: {metrics[:200]!r}") from exc
    if not isinstance(metrics, Mapping):
        raise GateRuleError(f"{what} must be a mapping of metric -> number, got {type(metrics).__name__}")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise GateRuleError(f"{what}[{key!r}] is not a number: {value!r}") from None
    return out


@dataclass
class Check:
    metric: str
    rule: str
    candidate: float | None
    champion: float | None
    passed: bool
    reason: str = ""


def _tol(*values: float) -> float:
    return 1e-9 * max(1.0, *(abs(v) for v in values))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def evaluate(
    rules: Mapping[str, Mapping[str, Any]],
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
) -> list[Check]:
    """Every comparator of every metric as a :class:`Check` (``champion`` None: no champion)."""
    checks: list[Check] = []
    for metric, rule in rules.items():
        lower = rule["direction"] == "lower"
        cand = candidate.get(metric)
        champ = champion.get(metric) if champion is not None else None
        for key, bound in rule.items():
            if key == "direction":
                continue
            label = f"{key} {bound:g}"
            if cand is None:
                checks.append(
                    Check(
                        metric,
                        label,
                        None,
                        champ,
                        False,
                        (
                            f"candidate has no metric {metric!r}; metrics present: {', '.join(sorted(candidate)) or 'none'}"
                        ),
                    )
                )
                continue
            if key == "min":
                ok = cand >= bound - _tol(cand, bound)
                checks.append(
                    Check(metric, label, cand, champ, ok, "" if ok else f"{metric} {cand:g} < min {bound:g}")
                )
                continue
            if key == "max":
                ok = cand <= bound + _tol(cand, bound)
                checks.append(
                    Check(metric, label, cand, champ, ok, "" if ok else f"{metric} {cand:g} > max {bound:g}")
                )
                continue
            if champion is None:
                checks.append(Check(metric, label, cand, None, True, "no champion yet: not compared"))
                continue
            if champ is None:
                checks.append(
                    Check(
                        metric,
                        label,
                        cand,
                        None,
                        False,
                        (
                            f"champion has no metric {metric!r}; metrics present: {', '.join(sorted(champion)) or 'none'}"
                        ),
                    )
                )
                continue
            improvement = (champ - cand) if lower else (cand - champ)
            scale = abs(champ)
            if key == "max_regression":
                ok = -improvement <= bound * scale + _tol(cand, champ)
                why = f"{metric} regressed {-improvement:g} > {bound:g} x |{champ:g}| (relative)"
            elif key == "max_regression_abs":
                ok = -improvement <= bound + _tol(cand, champ)
                why = f"{metric} regressed {-improvement:g} > {bound:g} (absolute)"
            elif key == "min_improvement":
                ok = improvement >= bound * scale - _tol(cand, champ)
                why = f"{metric} improved {improvement:g} < {bound:g} x |{champ:g}| (relative)"
            else:  # min_improvement_abs
                ok = improvement >= bound - _tol(cand, champ)
                why = f"{metric} improved {improvement:g} < {bound:g} (absolute)"
            checks.append(Check(metric, label, cand, champ, ok, "" if ok else why))
    return checks


def render_table(checks: list[Check], directions: Mapping[str, Mapping[str, Any]]) -> str:
    """A fixed-width table: metric | candidate | champion | rule | verdict."""
    rows = [("metric", "candidate", "champion", "rule", "verdict")]
    for c in checks:
        arrow = "(lower better)" if directions[c.metric]["direction"] == "lower" else "(higher better)"
        verdict = "PASS" if c.passed else "FAIL"
        if c.reason and c.passed:
            verdict += f" ({c.reason})"
        elif c.reason:
            verdict += f": {c.reason}"
        rows.append((f"{c.metric} {arrow}", _fmt(c.candidate), _fmt(c.champion), c.rule, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(r[j].ljust(widths[j]) for j in range(4)) + "  " + r[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
    return "\n".join(lines)
