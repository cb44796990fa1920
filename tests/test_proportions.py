"""The audit's intervals against published values, and the verdicts they change."""

import pytest

from robench.evaluation import audit_checks as checks
from robench.proportions import newcombe, noise_points, small_sample_note, wilson


@pytest.mark.parametrize("k, n, low, high", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombes_table(k, n, low, high):
    """Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3."""
    assert wilson(k, n) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize("k1, n1, k2, n2, low, high", [
    (56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090), (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926), (0, 10, 0, 20, -0.1611, 0.2775), (10, 10, 0, 20, 0.6791, 1.0),
])
def test_newcombe_matches_newcombes_table(k1, n1, k2, n2, low, high):
    """Newcombe (1998), "Interval estimation for the difference between independent proportions", Table II,
    method 10."""
    assert newcombe(k1 / n1, k2 / n2, n1, n2) == pytest.approx((low, high), abs=5e-5)


def test_noise_and_small_sample_note():
    assert noise_points(1000) == pytest.approx(3.09, abs=0.01)  # ±3.1 pts at 50 % on 1,000 images
    assert small_sample_note(1000) == ""
    assert small_sample_note(50) == "n = 50: one image is 2.0 pts and differences under 13.4 pts are within noise"
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_a_verdict_the_noise_could_overturn_is_warn():
    """Check 3 (convergence): 1.5 pts broken is a pass by value; on 1,000 images its interval [0.9, 2.5]
    stays under the warn threshold 4 (pass), on 50 images ([0.0, 10.5]) it does not (warn)."""
    assert checks.check_convergence(0.5, 0.485, "cheap", "strong", 1000).status == "pass"
    small = checks.check_convergence(0.5, 0.48, "cheap", "strong", 50)
    assert small.measured == 2.0 and small.status == "warn" and small.interval == [0.35, 10.5]
    assert "n = 50: one image is 2.0 pts" in small.detail
    # 6 pts is a fail by value; on 1,000 images the interval [4.7, 7.6] stays above the pass threshold 2,
    # and so does 3 images of 50 ([2.1, 16.2]); 2.5 pts (one image of 40) could be noise: warn
    assert checks.check_convergence(0.5, 0.44, "cheap", "strong", 1000).status == "fail"
    assert checks.check_convergence(0.5, 0.44, "cheap", "strong", 50).status == "fail"
    one_of_40 = checks.check_convergence(0.5, 0.475, "cheap", "strong", 40)
    assert one_of_40.measured == 2.5 and one_of_40.status == "warn"


def test_difference_checks_use_the_paired_interval():
    """Checks 1 and 4 compare two attacks on the same images: the interval is that of the share of images
    between them (Wilson, signed), not Newcombe's independent one, which would never let them pass."""
    rise = checks.check_monotone({0.0: 0.9, 0.1: 0.30, 0.2: 0.33}, 1000)
    assert rise.status == "fail" and rise.measured == 3.0
    assert rise.interval == [round(100 * v, 2) for v in wilson(30, 1000)]
    falling = checks.check_monotone({0.0: 0.9, 0.1: 0.40, 0.2: 0.38}, 1000)
    assert falling.status == "pass" and falling.measured == -2.0 and falling.interval[1] < 0
    gain = checks.check_attack_loss([("pgd-ce", 0.40, "pgd-margin", 0.39)], 1000)
    assert gain.status == "pass" and gain.interval == [round(100 * v, 2) for v in wilson(10, 1000)]
    assert newcombe(0.40, 0.39, 1000)[1] > 0.04  # why not Newcombe: its top alone is past the warn threshold
    noisy = checks.check_attack_loss([("pgd-ce", 0.40, "pgd-margin", 0.385)], 200)  # 3 images of 200
    assert noisy.measured == 1.5 and noisy.status == "warn"
