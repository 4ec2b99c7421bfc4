import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

# _corr is private: the vectorised kernel is checked against SciPy directly, tie by tie
from effvit_nas.fidelity.ranking import _corr, agreement, top_k_overlap


@pytest.mark.parametrize("kind, reference", [("spearman", spearmanr), ("kendall", kendalltau)])
def test_vectorised_correlations_equal_scipy_with_ties(kind, reference):
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 5, size=12).astype(float)  # many ties
        b = a + rng.normal(0, 2, size=12)
        assert _corr(kind, a, b) == pytest.approx(reference(a, b).statistic, abs=1e-12)


def test_agreement_of_same_and_reversed_order():
    ref = [0.5, 0.7, 0.6, 0.9, 0.8, 0.4]
    same = agreement([2 * v for v in ref], ref, top_k=3)
    assert same.kendall == pytest.approx(1) and same.spearman == pytest.approx(1)
    assert same.kendall_ci == pytest.approx((1, 1)) and same.top_k_overlap == 1
    rev = agreement([-v for v in ref], ref, top_k=3)
    assert rev.kendall == pytest.approx(-1) and rev.top_k_overlap == 0


def test_interval_holds_the_estimate_and_is_wide_for_few_noisy_points():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=10)
    a = agreement(ref + rng.normal(0, 1, size=10), ref)
    assert a.kendall_ci[0] <= a.kendall <= a.kendall_ci[1]
    assert a.kendall_ci[1] - a.kendall_ci[0] > 0.2


def test_constant_proxy_ranks_nothing():
    assert agreement([1.0, 1.0, 1.0, 1.0], [0.1, 0.3, 0.2, 0.4]).kendall == 0


def test_top_k_overlap_counts_shared_best():
    assert top_k_overlap([5, 4, 3, 2, 1], [5, 3, 4, 1, 2], 2) == 0.5
    with pytest.raises(ValueError):
        agreement([1, 2], [1, 2])
