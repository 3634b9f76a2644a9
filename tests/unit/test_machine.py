"""A host claims a core nobody else on the machine holds, and is pinned to it."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from actors.machine import claim, claim_core, private_dir


def test_each_claim_takes_a_core_nobody_holds_and_closing_lets_it_go(tmp_path: Path) -> None:
    first = claim(tmp_path, [0, 1])
    second = claim(tmp_path, [0, 1])
    assert first is not None and second is not None
    assert (first[0], second[0]) == (0, 1)
    assert claim(tmp_path, [0, 1]) is None  # both held: a third host is not pinned
    os.close(first[1])  # its process ended
    again = claim(tmp_path, [0, 1])
    assert again is not None and again[0] == 0
    for _, fd in (second, again):
        os.close(fd)


def test_the_directory_is_private(tmp_path: Path) -> None:
    path = private_dir("cores", base=str(tmp_path))
    assert path.stat().st_mode & 0o777 == 0o700 and path.parent.stat().st_mode & 0o777 == 0o700
    os.chmod(path, 0o755)
    with pytest.raises(PermissionError):
        private_dir("cores", base=str(tmp_path))


def _claim_in_child(base: str, out: Any, release: Any) -> None:
    stop = threading.Event()
    before = threading.Thread(target=stop.wait)  # a thread that runs before the claim
    before.start()
    core = claim_core(base)
    again = claim_core(base)  # the same process: the same core, nothing more claimed
    after = threading.Thread(target=stop.wait)
    after.start()
    out.put((core, again, os.sched_getaffinity(0), os.sched_getaffinity(before.native_id),
             os.sched_getaffinity(after.native_id)))
    stop.set()
    before.join()
    after.join()
    release.wait(30)  # hold the core while the next process claims one


def test_a_process_is_pinned_with_all_its_threads_and_the_next_gets_another_core(
        tmp_path: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("spawn")
    release = ctx.Event()
    children, results = [], []
    try:
        for _ in range(2):
            out = ctx.Queue()
            child = ctx.Process(target=_claim_in_child, args=(str(tmp_path), out, release))
            child.start()
            children.append(child)
            results.append(out.get(timeout=60))
    finally:
        release.set()
        for child in children:
            child.join(timeout=30)
    if len(cores) < 2:  # nothing to gain: nobody is pinned
        assert [r[:2] for r in results] == [(None, None)] * 2
        return
    for (core, again, main, before, after), expected in zip(results, cores[:2], strict=True):
        assert core == again == expected
        assert main == before == after == {expected}
    assert os.sched_getaffinity(0) == set(cores)  # this process was not touched
