"""With the identity decoder and ``fit()`` defaults the latent LMM matches lme4 on real data.

lme4's numbers (ML fits, R 4.2.2, lme4 1.1.31) and the z-scored data sets are recorded in
``benchmarks/lme4/`` by ``benchmarks/lme4/make_reference.R`` (see its README); R is not needed
here. Tolerances are those of the LMM-defaults issue: every fixed effect within 2 lme4 standard
errors, BLUP correlation >= 0.95 per random term, random-effect sds within 30 %, the
intercept–slope correlation within 0.35 of lme4's.
"""

from __future__ import annotations

import pytest

from benchmarks.lme4_agreement import DATASETS, compare

pytestmark = pytest.mark.usefixtures("isolated_pyro")  # one thread, empty param store


@pytest.mark.parametrize("name", list(DATASETS))
def test_identity_decoder_with_defaults_matches_lme4(name):
    r = compare(name)
    assert r["stop_reason"] == "converged"
    for term, f in r["fixed"].items():
        assert abs(f["z"]) < 2.0, (term, f)
    for term, corr in r["blup_corr"].items():
        assert corr >= 0.95, (term, corr)
    for term, sd in r["sd"].items():
        assert abs(sd / r["sd_lme4"][term] - 1.0) < 0.30, (term, sd, r["sd_lme4"][term])
    assert abs(r["corr"] - r["corr_lme4"]) < 0.35
    if "uncorrelated" in name:
        assert r["corr"] == 0.0  # `||`: no correlation parameter at all
