"""The bulk existence strategy, with a fake store that records its listings; the retry loop."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

import repro.remotes.common
from repro.remotes.common import FEW_KEYS, bulk_exists, retrying


class FakeStore:
    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = set(keys)
        self.listed: list[str] = []
        self.asked: list[str] = []

    def exists_one(self, key: str) -> bool:
        self.asked.append(key)
        return key in self.keys

    def list_prefix(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return [k for k in self.keys if k.startswith(prefix)]


def keys(count: int, start: int = 0) -> list[str]:
    return [f"files/md5/{i % 256:02x}/{i:030x}" for i in range(start, start + count)]


def test_few_keys_are_asked_one_by_one() -> None:
    store = FakeStore(keys(10))
    wanted = keys(FEW_KEYS // 2, 5)
    assert bulk_exists(wanted, store.exists_one, store.list_prefix) == set(keys(5, 5))
    assert store.listed == []


def test_many_keys_list_each_fanout_folder_once() -> None:
    store = FakeStore(keys(1000))
    wanted = keys(2000)
    assert bulk_exists(wanted, store.exists_one, store.list_prefix) == set(keys(1000))
    assert store.asked == []
    assert sorted(store.listed) == sorted({f"files/md5/{i:02x}/" for i in range(256)})


def test_a_small_paginated_store_is_listed_whole() -> None:
    store = FakeStore(keys(1000))
    found = bulk_exists(keys(2000), store.exists_one, store.list_prefix, page_size=1000)
    assert found == set(keys(1000))
    assert store.listed == ["files/md5/00/", "files/md5/"]  # a sample, then all of it


def test_a_big_paginated_store_is_listed_by_folder() -> None:
    store = FakeStore(keys(256 * 200))  # 200 keys per folder: the whole listing is 52 pages
    found = bulk_exists(keys(2000), store.exists_one, store.list_prefix, page_size=1000)
    assert found == set(keys(2000))
    assert len(store.listed) == 256 and "files/md5/" not in store.listed


def test_a_few_keys_of_a_huge_paginated_store_are_asked_one_by_one() -> None:
    # 400 keys per folder: one query per key (cost 20) beats listing 102,400 keys.
    store = FakeStore(keys(256 * 400))
    wanted = keys(300, 256 * 400 - 100)  # 100 there, 200 not
    found = bulk_exists(wanted, store.exists_one, store.list_prefix, 1000, query_cost=20)
    assert found == set(keys(100, 256 * 400 - 100))
    assert len(store.listed) == 1  # the sample folder only
    assert len(store.asked) == len([k for k in wanted if not k.startswith(store.listed[0])])


def test_many_keys_of_a_paginated_store_are_listed_despite_a_query_cost() -> None:
    store = FakeStore(keys(256 * 400))
    found = bulk_exists(keys(20_000), store.exists_one, store.list_prefix, 1000, query_cost=20)
    assert found == set(keys(20_000)) and store.asked == []


def test_retrying_repeats_only_transient_failures_and_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(repro.remotes.common, "sleep", waits.append)
    outcomes: list[object] = [TimeoutError("1"), TimeoutError("2"), "done"]

    def attempt() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def transient(exc: Exception) -> bool:
        return isinstance(exc, TimeoutError)

    assert retrying(attempt, transient, (0.5, 1.0, 2.0)) == "done"
    assert waits == [0.5, 1.0]

    waits.clear()
    outcomes[:] = [TimeoutError(str(n)) for n in range(5)]
    with pytest.raises(TimeoutError, match="^3$"):  # the last of 1 + 3 attempts
        retrying(attempt, transient, (0.5, 1.0, 2.0))
    assert waits == [0.5, 1.0, 2.0]

    waits.clear()
    outcomes[:] = [PermissionError("no"), "never"]
    with pytest.raises(PermissionError):
        retrying(attempt, transient, (0.5, 1.0, 2.0))
    assert waits == [] and outcomes == ["never"]
