"""token_budget_batches: the budget holds, every index appears exactly once, longest first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefsmith.scoring.batching import token_budget_batches


def test_hand_worked_example():
    # sorted by length: 9 (idx 1), 5 (idx 3), 4 (idx 0), 4 (idx 4), 2 (idx 2); budget 12:
    # [1] alone (2*9=18 > 12); [3, 0] (2*5=10, 3*5=15 > 12); [4, 2] (2*4=8).
    assert token_budget_batches([4, 9, 2, 5, 4], budget=12) == [[1], [3, 0], [4, 2]]


def test_over_budget_row_gets_its_own_batch():
    assert token_budget_batches([100, 3, 3], budget=10) == [[0], [1, 2]]


def test_empty_input_and_bad_budget():
    assert token_budget_batches([], budget=8) == []
    with pytest.raises(ValueError, match="budget"):
        token_budget_batches([1], budget=0)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=500), max_size=80),
    budget=st.integers(min_value=1, max_value=4000),
)
def test_budget_respected_and_every_index_once(lengths, budget):
    batches = token_budget_batches(lengths, budget=budget)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))  # each index exactly once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert padded <= budget or len(batch) == 1
    # greedy: a closed batch had no room for one more row (the next row is never longer)
    for batch in batches[:-1]:
        assert (len(batch) + 1) * lengths[batch[0]] > budget
