"""The numpy t and F quantiles (analysis/quantiles.py) against scipy.special's."""

import pytest
from scipy import special

from analysis.quantiles import f1_quantile, t_quantile, t_within


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 5, 10, 57, 235, 236, 1000, 9999])
def test_quantiles_match_scipy(dof):
    assert t_quantile(dof, 0.975) == pytest.approx(float(special.stdtrit(dof, 0.975)), rel=1e-11)
    assert t_quantile(dof, 0.8) == pytest.approx(float(special.stdtrit(dof, 0.8)), rel=1e-11)
    assert f1_quantile(dof, 0.95) == pytest.approx(float(special.fdtri(1, dof, 0.95)), rel=1e-11)


def test_two_sided_probability_and_bad_input():
    assert t_within(0.0, 7) == 0.0
    assert t_within(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| <= 1) = 1/2
    assert t_quantile(3, 0.5) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="dof >= 1"):
        t_quantile(0, 0.975)
