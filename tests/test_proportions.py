"""The audit's intervals against published values, and the verdicts they change."""

import pytest
import torch

from robench.evaluation import audit_checks as checks
from robench.proportions import newcombe, noise_points, paired_newcombe, small_sample_note, wilson


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


@pytest.mark.parametrize("table, low, high", [
    ((59, 6, 16, 80), -0.1186, -0.0046),
])
def test_paired_newcombe_matches_the_published_example(table, low, high):
    """Fagerland, Lydersen & Laake (2017), "Statistical Analysis of Contingency Tables", ch. 8: complete response
    before and after consolidation therapy (Cavo et al. 2012), the Newcombe square-and-add interval."""
    assert paired_newcombe(*table) == pytest.approx((low, high), abs=5e-5)


def flags(counts):
    """Per-image records of two attacks from the counts (both correct, first only, second only, neither)."""
    both, first, second, neither = counts
    a = torch.tensor([True] * both + [True] * first + [False] * second + [False] * neither)
    b = torch.tensor([True] * both + [False] * first + [True] * second + [False] * neither)
    return a, b


def test_paired_interval_counts_images_broken_both_ways():
    """Two attacks that break different images: the gain is the same 2 points whether the images nest (20
    broken by one only) or not (40 against 20), but the second interval is wider, and wider than the Wilson
    interval of the 2-point share that a nesting assumption would give."""
    nested = checks.difference_interval(*flags((380, 20, 0, 600)))
    crossed = checks.difference_interval(*flags((360, 40, 20, 580)))
    share = [round(100 * v, 2) for v in wilson(20, 1000)]
    assert nested[0] > 0 and crossed[0] < nested[0] and crossed[1] > nested[1]
    assert crossed[0] < share[0] and crossed[1] > share[1]
    agree = checks.difference_interval(*flags((400, 0, 0, 600)))  # the same images broken
    assert agree[0] == -agree[1] and 0 < agree[1] < nested[1] - nested[0]
    with pytest.raises(ValueError):
        checks.difference_interval(torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool))


def test_difference_checks_use_the_paired_interval():
    """Checks 1 and 4 compare two attacks on the same images: Newcombe's paired interval of their records, not
    the independent one, which would never let them pass, nor the share between them alone."""
    base = torch.arange(1000) < 300
    rise = checks.check_monotone({0.0: torch.arange(1000) < 900, 0.1: base, 0.2: torch.arange(1000) < 330})
    assert rise.status == "fail" and rise.measured == 3.0
    assert rise.interval == [round(100 * v, 2) for v in paired_newcombe(300, 30, 0, 670)]
    falling = checks.check_monotone({0.0: torch.arange(1000) < 900, 0.1: torch.arange(1000) < 400, 0.2: base})
    assert falling.status == "pass" and falling.measured == -10.0 and falling.interval[1] < 0
    ce, margin = flags((390, 10, 0, 600))
    gain = checks.check_attack_loss([("pgd-ce", ce, "pgd-margin", margin)])
    assert gain.status == "pass" and gain.measured == 1.0 and gain.interval[1] < 4
    assert newcombe(0.40, 0.39, 1000)[1] > 0.04  # why not Newcombe's independent one: its top is past warn
    nested = checks.check_attack_loss([("pgd-ce", *flags((385, 15, 0, 600))[:1], "pgd-margin",
                                        flags((385, 15, 0, 600))[1])])
    crossed = checks.check_attack_loss([("pgd-ce", *flags((300, 100, 85, 515))[:1], "pgd-margin",
                                         flags((300, 100, 85, 515))[1])])
    assert nested.measured == crossed.measured == 1.5 and nested.status == "pass"
    assert crossed.status == "warn" and crossed.interval[1] > 4  # the same gain, images broken both ways
    ce, margin = flags((72, 8, 5, 115))  # 3 images net of 200, 13 broken by one attack only
    noisy = checks.check_attack_loss([("pgd-ce", ce, "pgd-margin", margin)])
    assert noisy.measured == 1.5 and noisy.status == "warn" and "n = 200" not in noisy.detail
    tgsm_ce, tgsm_margin = flags((70, 10, 0, 120))
    largest = checks.check_attack_loss([("pgd-ce", ce, "pgd-margin", margin),
                                        ("tgsm-ce", tgsm_ce, "tgsm-margin", tgsm_margin)])
    assert largest.measured == 5.0 and "tgsm" in largest.detail
