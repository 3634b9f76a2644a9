"""What a host process uses of the machine it runs on: a private directory, a core of its own.

**A core per host.** With the ingress on every host (`gateway.ingress`), a host's event loop
is busy most of the time, and what it works on (its carts, their rendered views, its
connections) stays in its process. Left to the scheduler, the hosts of a machine move
between its cores with the load generator, Redis and each other, and each move starts on
cold caches. Pinned, each host to a core no other host there holds, the two hosts of the
2-core benchmark machine spent less CPU per churn request and served a little more, though
by less than the machine's own drift between runs: over seven alternating pairs of
``CART_ENGINE_PIN_CORES=true|false python -m loadtest.bench --systems engine --scenarios
churn --duration 15 --rounds 1 --own-redis`` (2026-11-30), pinned served more in six (by
-1.5 to +18.7%, median +3.1%) at 0.316 against 0.333 ms of server CPU per request (means);
with PATCH and DELETE in the mix (``churn-edit``, four pairs) no difference showed. The
stateless peer (`loadtest.peers`), its two workers pinned the same way, did not gain (3,249
against 3,771 and 3,549 against 3,622 requests/s): its state is in Redis, not in its
workers.

A core is claimed with a lock file per core in the machine's private directory
(``<tmp>/cart-engine-<uid>/cores``), held (``flock``) as long as the process lives: the
kernel lets go of it when the process ends, however it ends. Hosts of every cluster of this
user on the machine take from the same cores; one that finds none free (more hosts than
cores) is not pinned. Other processes (Redis, the serving process, a load generator) are
left where the scheduler puts them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: The lock of the core this process claimed (open for the process's life), if any.
_claimed: tuple[int, int] | None = None


def private_dir(*parts: str, base: str | None = None) -> Path:
    """``<tmp>/cart-engine-<uid>/<parts...>``, each directory made ``0700`` if missing.

    Raises PermissionError if any of them exists and is not this user's, or is open to
    others."""
    path = Path(base or tempfile.gettempdir()) / f"cart-engine-{os.getuid()}"
    dirs = [path]
    for part in parts:
        path = path / part
        dirs.append(path)
    for d in dirs:
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
        info = d.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() \
                or info.st_mode & 0o077:
            raise PermissionError(f"{d} is not a private directory of this user")
    return path


def claim_core(base: str | None = None) -> int | None:
    """Claim a core of this machine that no other host holds and pin every thread of this
    process to it (threads started later inherit it). The core's number, or None: this
    process has one already (that one), fewer than two cores are allowed to it, every one
    is held, pinning is refused here (logged), or this is not Linux."""
    global _claimed
    if _claimed is not None:
        return _claimed[0]
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return None  # not Linux: the scheduler places it
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    try:
        claimed = claim(private_dir("cores", base=base), cores)
        if claimed is None:
            return None
        pin(claimed[0])
    except OSError as e:
        log.warning("not pinned to a core: %s", e)
        return None
    _claimed = claimed
    return claimed[0]


def claim(directory: Path, cores: list[int]) -> tuple[int, int] | None:
    """The first of ``cores`` whose lock in ``directory`` this call could take, with the
    open descriptor that holds it (closing it lets go); None if every one is held."""
    for core in cores:
        fd = os.open(directory / f"core-{core}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return core, fd
    return None


def pin(core: int) -> None:
    """Pin every thread of this process to ``core``. Raises OSError if the kernel refuses."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), {core})
