"""Always-valid confidence intervals for a mean, so a gate may look at its data every minute.

A fixed-n test checked again and again as data arrives raises false alarms far above its
nominal level (every look is another chance to cross). A *confidence sequence* holds
uniformly over time: with probability at least ``1 - alpha`` the true mean is inside the
interval at every sample size at once, so the gate may stop at the first crossing.

This is the asymptotic confidence sequence of Waudby-Smith, Arnold, Ramdas, Wang and
Howard, "Time-uniform central limit theory and asymptotic confidence sequences" (2021,
Theorem 2.2): a Robbins normal-mixture boundary around the running mean, scaled by the
running standard deviation,

    mean ± sd * sqrt( 2 (t ρ² + 1) / (t² ρ²) * log( sqrt(t ρ² + 1) / alpha ) )

where ``ρ`` sets the sample size around which the interval is tightest (`mixture_rho`).
"""

from __future__ import annotations

import math


def mixture_rho(alpha: float, tightest_at: float) -> float:
    """The mixture parameter that makes the interval narrowest near ``tightest_at`` samples."""
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / tightest_at)


def radius(n: float, sd: float, alpha: float, tightest_at: float) -> float:
    """Half-width of the two-sided ``1 - alpha`` confidence sequence of a mean after ``n`` samples.

    Returns:
        ``inf`` before the first sample.
    """
    if n <= 0:
        return math.inf
    rho2 = mixture_rho(alpha, tightest_at) ** 2
    return sd * math.sqrt(2.0 * (n * rho2 + 1.0) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1.0) / alpha))


def rate_sd(successes: float, n: float) -> float:
    """Standard deviation of a Bernoulli rate, with half a pseudo-count each way.

    The shrinkage keeps an arm with no events yet (0 of n) from claiming zero variance and
    an interval of zero width.
    """
    p = (successes + 0.5) / (n + 1.0)
    return math.sqrt(p * (1.0 - p))
