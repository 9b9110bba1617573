"""The parts of a report's look that numbers decide: significant digits and ties (crlbench.reports.numbers),
short column names (crlbench.reports.columns), model colours (crlbench.reports.palette) and value axes that
survive an outlier seed (crlbench.reports.figures.value_axis)."""

import math
import re

import pytest

from crlbench.reports import columns, numbers, palette
from crlbench.reports.figures import value_axis


@pytest.mark.parametrize("mean, spread, shown", [
    (0.0012, 0.0003, "0.00120 ± 0.00030"),  # not 0.001 ± 0.000
    (0.0012, 0.00031, "0.00120 ± 0.00031"),
    (1787.136, 12.4, "1787 ± 12"),  # not 1787.136 ± 12.400
    (1787.136, 123.0, "1790 ± 120"),  # the spread's two digits decide, also left of the point
    (0.5, 0.0996, "0.50 ± 0.10"),  # a spread that rounds up to the next power of ten
    (0.97881, 0.0075, "0.9788 ± 0.0075"),
    (-0.00004, 0.03, "0.000 ± 0.030"),  # no negative zero
])
def test_the_spread_has_two_significant_digits_and_the_mean_its_decimal_place(mean, spread, shown):
    assert numbers.plus_minus(mean, spread) == shown


def test_a_mean_without_spread_keeps_three_significant_digits():
    assert numbers.plus_minus(0.0123456, 0.0) == "0.0123 ± 0"
    assert numbers.plus_minus(1787.136, math.nan) == "1790 ± 0"
    assert numbers.plus_minus(math.nan, 0.1) == "–"


@pytest.mark.parametrize("value, digits, shown", [(0.0996, 2, "0.10"), (147.0, 3, "147"), (12.345, 3, "12.3"),
                                                  (0.000123456, 3, "0.000123"), (0.0, 3, "0"), (123456.0, 2, "120000")])
def test_significant_digits_without_exponent(value, digits, shown):
    assert numbers.significant(value, digits) == shown


def test_readable_values_keep_whole_numbers_whole():
    assert [numbers.readable(v) for v in (-40.0, 147.0, 0.47312, 12.345)] == ["-40", "147", "0.473", "12.3"]


def test_means_that_print_the_same_are_all_best():
    # 0.50 ± 0.12 and 0.50 ± 0.15 print the same mean: both bold; 0.30 is not
    assert numbers.best_and_ties([0.501, 0.499, 0.3], [0.12, 0.15, 0.11], maximise=True) == [True, True, False]
    assert numbers.plus_minus(0.501, 0.12) == numbers.plus_minus(0.499, 0.12) == "0.50 ± 0.12"
    # at four decimals 0.5012 and 0.4991 differ: only the best
    assert numbers.best_and_ties([0.5012, 0.4991], [0.0011, 0.0011], maximise=True) == [True, False]
    # lower is better, NaN never best
    assert numbers.best_and_ties([0.2, math.nan, 0.1], [0.01, 0.01, 0.01], maximise=False) == [False, False, True]
    # the coarser precision decides: 0.98 (± 0.12) and 0.981 (± 0.004) tie at two decimals
    assert numbers.best_and_ties([0.9812, 0.9808], [0.12, 0.004], maximise=True) == [True, True]


def test_short_column_names_are_distinct_and_keep_the_key_and_direction():
    shown = columns.columns(["dci@reg.disentanglement", "dci@dlib.disentanglement", "mcc@pearson.mcc",
                             "counterfactual@probe.target_error", "plugin@x.some_score"])
    assert [column.short for column in shown] == ["DCI-D (reg)", "DCI-D (dlib)", "MCC", "Target err.", "some_score"]
    assert [column.direction for column in shown] == ["max", "max", "max", "min", "max"]
    assert shown[3].better == "lower is better" and shown[0].key == "dci@reg.disentanglement"


def test_built_in_models_have_fixed_colours_and_others_a_stable_hashed_one():
    assert palette.model_colour("icm_vae") == "#0072B2" and palette.model_colour("beta_vae") == "#CC79A7"
    plugin = palette.model_colour("linear_ae")
    assert re.fullmatch(r"#[0-9a-f]{6}", plugin) and plugin == palette.model_colour("linear_ae")
    assert plugin not in palette.BUILT_IN.values() and plugin != palette.model_colour("linear_ae+variant")
    assert len(set(palette.BUILT_IN.values())) == 4


def test_positive_values_over_many_decades_get_a_log_axis():
    assert value_axis([1e-5, 2e-5, 0.01, 0.03, 0.07]).kind == "log"
    assert value_axis([0.2, 0.3, 0.5]).kind == "linear" and value_axis([0.2, 0.3, 0.5]).limits is None


def test_an_outlier_seed_is_left_outside_the_axis_limits():
    values = [0.50, 0.52, 0.55, 0.61, 0.58, 0.49, -40.0]  # one diverged seed, negative: no log axis
    axis = value_axis(values)
    assert axis.kind == "linear" and axis.limits is not None
    low, high = axis.limits
    assert low > -1 and high < 1 and all(low <= value <= high for value in values[:-1])
    assert axis.clip(-40.0) == low and axis.clip(0.5) is None


def test_the_issues_asymmetric_interval_prints_as_an_interval_not_a_plus_minus():
    assert numbers.interval_text(0.00012, 0.000018, 0.00042) == "0.00012 [0.000018, 0.00042]"
    assert "± 0.00020" not in numbers.interval_text(0.00012, 0.000018, 0.00042)


def test_a_plus_minus_never_crosses_zero_when_the_interval_does_not():
    # arms 0.012 and 0.017 are within a factor 1.5, but 0.013 ± 0.0145 would reach below zero
    mean, low, high = 0.013, 0.001, 0.030
    assert not numbers.symmetric_enough(mean, low, high)
    assert numbers.interval_text(mean, low, high) == "0.013 [0.0010, 0.030]"
    assert numbers.interval_text(0.01, -0.005, 0.02) == "0.010 ± 0.013"  # both cross zero: the ± is fine


def test_a_mean_on_a_bound_of_its_interval_keeps_the_longer_arms_places():
    """The shorter arm is 0 when the mean sits on a bound (BCa can put it there): the mean keeps the places of
    the longer arm, not one decimal."""
    assert numbers.interval_places(0.00012, 0.00012, 0.00042) == numbers.interval_places(0.00012, -0.00018, 0.00012) == 5
    assert numbers.interval_text(0.00012, 0.00012, 0.00042) == "0.00012 [0.00012, 0.00042]"
    assert numbers.interval_text(0.00012, -0.00018, 0.00012) == "0.00012 [-0.00018, 0.00012]"
    assert numbers.interval_text(0.5, 0.5, 0.9) == "0.50 [0.50, 0.90]"


def test_a_bound_at_floating_point_zero_prints_zero_not_seventeen_decimals():
    """A paired bootstrap bound of -3e-16 (zero up to rounding, as the environments report had one) prints as zero."""
    assert numbers.interval_text(0.0098, -3.0e-16, 0.0293) == "0.0098 [0.0000, 0.0293]"
    assert numbers.interval_text(0.00012, 0.000018, 0.00042) == "0.00012 [0.000018, 0.00042]"  # two places finer
    assert numbers.interval_text(0.5, 0.0004, 0.6) == "0.50 [0.0004, 0.60]"  # two places finer than the mean
    assert numbers.interval_text(0.5, 0.00004, 0.6) == "0.50 [0.00, 0.60]"  # zero two places finer


def test_latex_stacks_an_asymmetric_intervals_arms_with_the_same_mean_and_places():
    """The LaTeX table prints ``+above`` over ``−below`` (as narrow as a ``±``): the same mean as the
    ``[low, high]`` text, each arm at two significant digits, never fewer decimals than the mean."""
    assert numbers.interval_arms(0.00012, 0.000018, 0.00042) == ("0.00012", "+0.00030", "−0.00010")
    assert numbers.interval_arms(0.5, 0.5, 0.9) == ("0.50", "+0.40", "−0.00")
    assert numbers.interval_arms(0.5, 0.38, 0.62) is None and numbers.interval_arms(math.nan, 0.1, 0.9) is None


def test_a_symmetric_interval_keeps_its_plus_minus_text():
    assert numbers.interval_text(0.5, 0.38, 0.62) == numbers.plus_minus(0.5, 0.12) == "0.50 ± 0.12"
    assert numbers.interval_text(0.0123, 0.0123, 0.0123) == "0.0123 ± 0"
    assert numbers.interval_text(math.nan, math.nan, math.nan) == "–"


def test_an_interval_of_floating_point_noise_prints_as_no_spread():
    """The supervised row's MIC in the environments report: 1.0000000000000002 over seeds, its bootstrap
    interval 4e-16 wide, printed with seventeen decimals before."""
    assert numbers.interval_text(1.0000000000000002, 1.0000000000000002, 1.0000000000000007) == "1.00 ± 0"
    assert numbers.plus_minus(1.0000000000000002, 2e-16) == "1.00 ± 0"
    assert numbers.interval_arms(1.0000000000000002, 1.0000000000000002, 1.0000000000000007) is None
    assert numbers.interval_text(0.5, 0.38, 0.62) == "0.50 ± 0.12"  # a real spread is untouched
    # a tiny value with a spread of its own size is not noise: it keeps its digits
    assert numbers.interval_text(1e-14, 0.0, 3e-14) == "0.000000000000010 [0.000000000000000, 0.000000000000030]"
