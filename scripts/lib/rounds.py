"""Statistics of benchmark rounds. A round runs every server once, back to
back, so a slow drift of the machine's speed moves them all; the ratio of two
servers within one round is what compares, and these summarise such ratios
over the rounds."""

import random
import statistics


def interval(ratios, level=0.95, resamples=10_000):
    """A `level` bootstrap interval of the median of `ratios` (percentile method, fixed seed so that a rerun of
    the same figures prints the same interval): where the typical round's ratio lies, given how much the rounds
    spread. Whether a target a few per cent from 1.0 is met is only shown when the interval excludes it."""
    rng = random.Random(1)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return meds[int(resamples * (1 - level) / 2)], meds[int(resamples * (1 + level) / 2) - 1]


def summary(ratios, target=None, higher=True):
    """The rounds' ratios as "rounds lowest-highest, met in k of n, 95 % interval a-b" (without a target, no
    count; "-" without ratios): the spread a ratio of medians hides."""
    if not ratios:
        return "-"
    low, high = interval(ratios)
    met = "" if target is None else \
        f", met in {sum(1 for x in ratios if (x >= target if higher else x <= target))} of {len(ratios)}"
    return f"rounds {min(ratios):.2f}-{max(ratios):.2f}{met}, 95 % interval {low:.2f}-{high:.2f}"
