"""Pinning: serve only the plan that was checked.

`mixer verify` checks a build and prints its plan's fingerprint; a training script that passes
it as ``StreamingMixture(..., expect=FINGERPRINT)`` (``MixerLoader``, ``MixerData`` alike) is
then served that very plan or nothing: a plan (or manifest) swapped in after the check, even one
whose fingerprints were recomputed, has another fingerprint and is refused.
"""

from __future__ import annotations

from mixer.artifacts.manifest import Manifest
from mixer.errors import UsageError


def check_expected(expect: str | None, manifest: Manifest, plan=None) -> None:
    """UsageError unless ``expect`` (if given) is the fingerprint of the build's train plan
    (``plan``, loaded here if None: a val split is pinned by its build's train plan too)."""
    if expect is None:
        return
    if plan is None:
        from mixer.artifacts.planfile import load_plan

        plan = load_plan(manifest)
    if plan.fingerprint != expect:
        raise UsageError(
            f"{manifest.location}: its plan's fingerprint is {plan.fingerprint}, not the expected"
            f" {str(expect)[:80]}: the build changed since it was checked; run `mixer verify`"
            " on it again and pin the fingerprint it prints"
        )
