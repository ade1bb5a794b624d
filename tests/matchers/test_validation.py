"""The hyperparameter checks shared by the matchers: each names the key and the value."""
import math

import pytest

from lada.matchers.validation import (
    require,
    require_in_range,
    require_nonnegative,
    require_one_of,
    require_positive,
    require_positive_int,
)

KEY = "MODEL.MATCHER.X.KEY"


@pytest.mark.parametrize("check, good, bad, message", [
    (require_positive, [1e-9, 3], [0, -1.0, math.nan, True], "must be > 0"),
    (require_nonnegative, [0, 2.5], [-1e-9, math.nan], "must be >= 0"),
    (require_positive_int, [1, 9, 9.0], [0, 1.5, -2, math.inf, math.nan],
     "must be a positive integer"),
])
def test_numeric_checks(check, good, bad, message):
    for value in good:
        check(KEY, value)
    for value in bad:
        with pytest.raises(ValueError, match=f"^{KEY} {message}, got {value!r}$"):
            check(KEY, value)


def test_range_choice_and_general_check():
    require_in_range(KEY, 0, 0, 1)
    require_in_range(KEY, 1.0, 0, 1)
    with pytest.raises(ValueError, match=rf"^{KEY} must be in \[0, 1\], got 1.5$"):
        require_in_range(KEY, 1.5, 0, 1)
    require_one_of(KEY, "a", ("a", "b"))
    with pytest.raises(ValueError, match=rf"^{KEY} must be one of \('a', 'b'\), got 'c'$"):
        require_one_of(KEY, "c", ["a", "b"])
    require(True, KEY, "must hold", 0)
    with pytest.raises(ValueError, match=f"^{KEY} must hold, got 0$"):
        require(False, KEY, "must hold", 0)
