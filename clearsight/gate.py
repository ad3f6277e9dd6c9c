"""The promotion gate: rules, and the decision they lead to.

A challenger may replace the champion only when it clears absolute floors,
does not regress against the champion on the same test split beyond a
tolerance, sees no excessive data drift, is well calibrated, and passes the
Evidently test suite. The first model ever trained (no champion yet) is
judged on the floors alone (accuracy, macro-F1, recall of the critical
classes): drift, calibration and the test suite are still evaluated and listed
in the decision, marked informational, but they do not block it. Every rule
that fails adds a reason.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PromotionRules(BaseModel):
    """Thresholds of the gate, from ``configs/promote.yaml``."""

    model_config = ConfigDict(extra="forbid")

    min_accuracy: float = Field(0.90, ge=0, le=1)
    min_macro_f1: float = Field(0.90, ge=0, le=1)
    critical_classes: list[str] = Field(
        default_factory=list,
        description="classes whose recall must stay high (e.g. melanoma)",
    )
    min_critical_recall: float = Field(0.90, ge=0, le=1)
    max_regression: float = Field(
        0.01, ge=0, le=1, description="allowed drop vs the champion, accuracy and macro-F1"
    )
    max_drift_share: float = Field(0.5, ge=0, le=1, description="share of drifted columns")
    drift_stattest: str = Field(
        "ks", description="Evidently test for numeric columns (ks: Kolmogorov-Smirnov)"
    )
    max_ece: float = Field(0.05, ge=0, le=1, description="expected calibration error")


class ModelScore(BaseModel):
    """What the gate knows about one model on the test split."""

    version: int
    accuracy: float
    macro_f1: float
    recall: dict[str, float] = Field(default_factory=dict)


class PromotionDecision(BaseModel):
    """The gate's verdict, with every reason and the numbers compared."""

    promote: bool
    reasons: list[str]
    informational: list[str] = Field(
        default_factory=list,
        description="checks evaluated but not blocking (a first model's drift, ECE, suite)",
    )
    challenger: ModelScore
    champion: ModelScore | None = None
    drift_share: float
    ece: float
    evidently_tests_passed: bool

    def summary(self) -> str:
        """One line for logs and tags."""
        verdict = "PROMOTE" if self.promote else "REJECT"
        return f"{verdict} v{self.challenger.version}: " + "; ".join(self.reasons)


def decide(
    challenger: ModelScore,
    champion: ModelScore | None,
    *,
    drift_share: float,
    ece: float,
    evidently_tests_passed: bool,
    rules: PromotionRules,
) -> PromotionDecision:
    """Apply every rule and collect the reasons; promote only if none failed.

    Without a champion only the floors block; the other checks are reported as
    informational, prefixed ``informational (first model, not blocking):``.
    """
    failures: list[str] = []
    passes: list[str] = []
    informational: list[str] = []
    first_model = champion is None

    def check(ok: bool, good: str, bad: str) -> None:
        (passes if ok else failures).append(good if ok else bad)

    def advisory(ok: bool, good: str, bad: str) -> None:
        """A check that blocks a challenger but only informs about a first model."""
        if first_model:
            informational.append(
                f"informational (first model, not blocking): {good if ok else bad}"
            )
        else:
            check(ok, good, bad)

    check(
        challenger.accuracy >= rules.min_accuracy,
        f"accuracy {challenger.accuracy:.4f} >= floor {rules.min_accuracy}",
        f"accuracy {challenger.accuracy:.4f} below floor {rules.min_accuracy}",
    )
    check(
        challenger.macro_f1 >= rules.min_macro_f1,
        f"macro-F1 {challenger.macro_f1:.4f} >= floor {rules.min_macro_f1}",
        f"macro-F1 {challenger.macro_f1:.4f} below floor {rules.min_macro_f1}",
    )
    for name in rules.critical_classes:
        recall = challenger.recall.get(name)
        if recall is None:
            failures.append(f"critical class {name!r} is not in the model's classes")
            continue
        check(
            recall >= rules.min_critical_recall,
            f"recall of critical class {name!r} {recall:.4f} >= {rules.min_critical_recall}",
            f"recall of critical class {name!r} {recall:.4f} below {rules.min_critical_recall}",
        )
    advisory(
        drift_share <= rules.max_drift_share,
        f"drifted columns {drift_share:.2f} <= {rules.max_drift_share}",
        f"data drift: {drift_share:.2f} of columns drifted, above {rules.max_drift_share}",
    )
    advisory(
        ece <= rules.max_ece,
        f"calibration error {ece:.4f} <= {rules.max_ece}",
        f"calibration error {ece:.4f} above {rules.max_ece}",
    )
    advisory(evidently_tests_passed, "Evidently test suite passed", "Evidently test suite failed")
    if champion is None:
        passes.append("no champion yet: judged on the floors alone")
    elif champion.version == challenger.version:
        passes.append(f"v{challenger.version} is already the champion")
    else:
        for metric in ("accuracy", "macro_f1"):
            new, old = getattr(challenger, metric), getattr(champion, metric)
            check(
                new >= old - rules.max_regression,
                f"{metric} {new:.4f} vs champion v{champion.version} {old:.4f}: "
                f"within tolerance {rules.max_regression}",
                f"{metric} regressed: {new:.4f} vs champion v{champion.version} "
                f"{old:.4f} (tolerance {rules.max_regression})",
            )
    return PromotionDecision(
        promote=not failures,
        reasons=(failures or passes) + informational,
        informational=informational,
        challenger=challenger,
        champion=champion,
        drift_share=drift_share,
        ece=ece,
        evidently_tests_passed=evidently_tests_passed,
    )
