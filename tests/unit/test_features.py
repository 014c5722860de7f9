import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.data.features import SplitError, features_and_label, model_inputs, time_split
from tests.conftest import FLIGHTS


def test_time_split_newest_is_holdout() -> None:
    split = time_split(["2013-03", "2013-01", "2013-02", "2013-04"], 1)
    assert split.train == ["2013-01", "2013-02"]
    assert split.validation == "2013-03"
    assert split.holdout == "2013-04"
    assert split.fit_batches == ["2013-01", "2013-02", "2013-03"]


def test_time_split_needs_enough_batches() -> None:
    with pytest.raises(SplitError, match="at least 3"):
        time_split(["2013-01", "2013-02"], 1)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_hour": pd.to_datetime(
                ["2013-01-01T10:00:00Z", "2013-01-05T23:00:00Z", "2013-01-06T02:00:00Z"], utc=True
            ),
            "arr_delay": [30.0, None, 3.0],
            "dep_delay": [25.0, 0.0, 1.0],
            "carrier": ["UA", "AA", None],
            "origin": ["EWR", "JFK", "LGA"],
            "dest": ["IAH", "MIA", "ORD"],
            **{
                c: [1.0, 2.0, 3.0]
                for c in [
                    "sched_dep_time",
                    "sched_arr_time",
                    "hour",
                    "minute",
                    "distance",
                    "temp",
                    "dewp",
                    "humid",
                    "wind_dir",
                    "wind_speed",
                    "wind_gust",
                    "precip",
                    "pressure",
                    "visib",
                    "plane_year",
                    "plane_seats",
                ]
            },
        }
    )


def test_features_are_deterministic_and_leak_nothing() -> None:
    config = load_config(FLIGHTS)
    x, y = features_and_label(frame(), config)
    assert list(x.columns) == config.features.columns
    assert "dep_delay" not in x.columns and "arr_delay" not in x.columns
    assert y.tolist() == [1, 0]  # the row without arr_delay has no label and is dropped
    # 2013-01-06T02:00Z is Saturday 5 January in New York
    assert x["day_of_week"].tolist() == [1.0, 5.0]
    assert x["day_of_month"].tolist() == [1.0, 5.0]
    pd.testing.assert_frame_equal(x, features_and_label(frame(), config)[0])


def test_missing_feature_column_is_named() -> None:
    with pytest.raises(KeyError, match="plane_seats"):
        model_inputs(frame().drop(columns=["plane_seats"]), load_config(FLIGHTS))
