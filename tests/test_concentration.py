"""Concentration and reliance metrics: golden values by hand and hypothesis properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from critmin.assess import (
    bloc_reliance,
    group_share,
    hhi,
    hhi_wgi,
    net_import_reliance,
    shares,
    top_n_share,
    wgi_scaled,
)


def test_shares_with_other_remainder() -> None:
    # 60 + 30 of 100 with 10 in "Other countries": the remainder is in the denominator, not a country
    s = shares([60.0, 30.0], other=10.0)
    assert s.tolist() == pytest.approx([0.6, 0.3])


def test_hhi_golden() -> None:
    assert float(hhi([1.0])) == pytest.approx(10_000.0)
    assert float(hhi([0.5, 0.5])) == pytest.approx(5_000.0)
    # 60/30/10 -> 3600 + 900 + 100
    assert float(hhi([0.6, 0.3, 0.1])) == pytest.approx(4_600.0)
    # remainder excluded: 0.6 and 0.3 with 0.1 unattributed -> 3600 + 900
    assert float(hhi(shares([60.0, 30.0], other=10.0))) == pytest.approx(4_500.0)


def test_wgi_scaling_and_hhi_wgi_golden() -> None:
    assert wgi_scaled([-2.5, 0.0, 2.5, 3.0]).tolist() == [10.0, 5.0, 0.0, 0.0]
    # 0.8^2*7 + 0.2^2*2 = 4.48 + 0.08
    assert float(hhi_wgi([0.8, 0.2], [7.0, 2.0])) == pytest.approx(4.56)
    assert float(hhi_wgi([0.8, 0.2], [7.0, 2.0], [1.5, 1.0])) == pytest.approx(0.64 * 7 * 1.5 + 0.08)


def test_top_n_and_group_share_golden() -> None:
    s = [0.1, 0.5, 0.25, 0.15]
    assert float(top_n_share(s, 1)) == pytest.approx(0.5)
    assert float(top_n_share(s, 3)) == pytest.approx(0.9)
    assert float(group_share(s, ["USA", "CHN", "AUS", "RUS"], {"CHN", "RUS"})) == pytest.approx(0.65)
    with pytest.raises(ValueError):
        top_n_share(s, 0)


def test_net_import_reliance_golden() -> None:
    # P=20, I=100, E=20 -> (100-20)/(20+100-20) = 0.8
    assert float(net_import_reliance(20, 100, 20)) == pytest.approx(0.8)
    # stock drawdown counts as supply: (100-20+10)/(20+100-20+10)
    assert float(net_import_reliance(20, 100, 20, 10)) == pytest.approx(90 / 110)
    # net exporter -> 0 (USGS "E")
    assert float(net_import_reliance(100, 10, 50)) == 0.0


def test_bloc_reliance_golden() -> None:
    # USA C=100 NIR 0.8 (P=20); JPN C=50 NIR 1.0 (P=0): 1 - 20/150
    assert float(bloc_reliance([0.8, 1.0], [100.0, 50.0])) == pytest.approx(1 - 20 / 150)


share_vectors = arrays(np.float64, st.integers(1, 12), elements=st.floats(0, 1e6, allow_nan=False)).filter(lambda a: a.sum() > 0)


@given(share_vectors, st.floats(0, 1e6))
@settings(max_examples=200, deadline=None)
def test_hhi_range_and_shares_sum(q: np.ndarray, other: float) -> None:
    s = shares(q, other)
    assert 0.0 <= float(hhi(s)) <= 10_000.0 + 1e-6
    assert float(s.sum()) <= 1.0 + 1e-9
    if other == 0:
        assert float(s.sum()) == pytest.approx(1.0)


@given(share_vectors, st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_metrics_independent_of_row_order(q: np.ndarray, rnd) -> None:  # type: ignore[no-untyped-def]
    perm = list(range(len(q)))
    rnd.shuffle(perm)
    s, sp = shares(q), shares(q[perm])
    assert float(hhi(s)) == pytest.approx(float(hhi(sp)))
    w = np.linspace(0, 10, len(q))
    assert float(hhi_wgi(s, w)) == pytest.approx(float(hhi_wgi(sp, w[perm])))
    assert float(top_n_share(s, 2)) == pytest.approx(float(top_n_share(sp, 2)))


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 1e6), st.floats(-1e5, 1e5))
@settings(max_examples=200, deadline=None)
def test_reliance_within_unit_interval(p: float, i: float, e: float, ds: float) -> None:
    v = float(net_import_reliance(p, i, e, ds))
    assert np.isnan(v) or 0.0 <= v <= 1.0


@given(arrays(np.float64, 3, elements=st.floats(0, 1)), arrays(np.float64, 3, elements=st.floats(0.01, 1e6)))
@settings(max_examples=100, deadline=None)
def test_bloc_reliance_between_participants(nir: np.ndarray, cons: np.ndarray) -> None:
    v = float(bloc_reliance(nir, cons))
    assert nir.min() - 1e-9 <= v <= nir.max() + 1e-9


def test_vectorised_over_draws() -> None:
    draws = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert hhi(draws).tolist() == pytest.approx([5000.0, 10000.0])
