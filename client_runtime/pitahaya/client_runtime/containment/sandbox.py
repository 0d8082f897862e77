"""The walls of a worker process, raised before any publisher code runs in it.

Layers, strongest first (each applied where the OS offers it; `harden` reports which held):

1. **A separate process**, killed by the host at a deadline: no loop, sleep or exit in the
   package reaches the host's threads or interpreter.
2. **Resource limits** (``setrlimit``): address space (the host's memory is never at risk; a
   package allocating gigabytes gets ``MemoryError`` or dies alone), CPU seconds while loading,
   the size of any file it writes, no core dumps.
3. **Landlock** (Linux 5.13+, unprivileged): no file may be created, written, truncated,
   renamed or removed outside the worker's own folder; files may be read only in that folder,
   in Python's own installation (standard library, site-packages), in the client runtime's
   package, in the system's shared-library folders and a few device files (so not the host's
   data, keys or tokens); no program may be executed; with ABI 4+ no TCP connect or bind;
   with ABI 6+ no signal to, and no abstract socket of, any process outside the sandbox (so
   not the host). ``no_new_privs`` is set first, as Landlock requires.
4. **An audit hook** (PEP 578) that refuses process creation, signals, sockets, ctypes,
   changing resource limits and writes outside the folder with a ``PermissionError``. It is
   not a security boundary on its own (Python code can crash its interpreter, for one); it
   gives clear errors where layer 3 is missing and one more wall where it is not.

The worker also starts with an allow-listed environment (no tokens or cloud credentials of
the host), stdin closed, its own session (no terminal signals) and only the descriptors of
its channel.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Landlock syscall numbers are the same on every architecture (asm-generic, Linux 5.13+).
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_FS_EXECUTE = 1 << 0
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_WRITE = (
    (1 << 1)  # WRITE_FILE
    | (1 << 4)  # REMOVE_DIR
    | (1 << 5)  # REMOVE_FILE
    | (1 << 6)  # MAKE_CHAR
    | (1 << 7)  # MAKE_DIR
    | (1 << 8)  # MAKE_REG
    | (1 << 9)  # MAKE_SOCK
    | (1 << 10)  # MAKE_FIFO
    | (1 << 11)  # MAKE_BLOCK
    | (1 << 12)  # MAKE_SYM
)
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
#: The rights a rule on a file (not a folder) may carry.
_FILE_RIGHTS = _FS_EXECUTE | (1 << 1) | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_TCP = (1 << 0) | (1 << 1)  # BIND_TCP, CONNECT_TCP (ABI 4)
_SCOPE_ALL = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET, SIGNAL (ABI 6)

#: Audit events refused outright once the sandbox is up (prefix match).
_DENIED_EVENTS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "os.startfile",
    "signal.pthread_kill",
    "subprocess.Popen",
    "pty.spawn",
    "socket.",
    "ctypes.",
    "resource.setrlimit",
    "resource.prlimit",
    "sys.remote_exec",
)
#: Audit events whose path arguments must lie inside the worker's folder.
_PATH_EVENTS = {
    "os.remove": 1,
    "os.rmdir": 1,
    "os.mkdir": 1,
    "os.rename": 2,
    "os.link": 2,
    "os.symlink": 2,
    "os.truncate": 1,
    "os.chmod": 1,
    "os.chown": 1,
    "os.utime": 1,
    "shutil.rmtree": 1,
    "shutil.move": 2,
    "shutil.copyfile": 2,
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
#: Readable besides Python's installation and the runtime's package: shared libraries a lazy
#: import may load, and what libc, numpy and ONNX Runtime read about the machine.
_SYSTEM_READABLE = (
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/share/zoneinfo",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/proc/self",
    "/proc/cpuinfo",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
)


def readable_roots() -> list[str]:
    """What a worker may read: Python's installation, the runtime's package and `_SYSTEM_READABLE`."""
    paths = sysconfig.get_paths()
    roots = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths]
    roots.append(str(Path(__file__).resolve().parents[1]))  # pitahaya/client_runtime
    roots.extend(_SYSTEM_READABLE)
    return sorted({os.path.realpath(r) for r in roots if os.path.exists(r)})


@dataclass
class Walls:
    """Which layers are up in this worker (reported to the host, logged, and asserted in tests)."""

    rlimits: list[str] = field(default_factory=list)
    landlock_abi: int = 0
    audit_hook: bool = False


def harden(workdir: Path, *, memory_bytes: int, cpu_s: float, file_bytes: int) -> Walls:
    """Raise every wall this OS offers around the current process (call once, before publisher code)."""
    walls = Walls()
    _limit_resources(walls, memory_bytes=memory_bytes, cpu_s=cpu_s, file_bytes=file_bytes)
    walls.landlock_abi = _landlock(workdir)
    sys.addaudithook(_AuditGuard(workdir))
    walls.audit_hook = True
    return walls


def _limit_resources(walls: Walls, *, memory_bytes: int, cpu_s: float, file_bytes: int) -> None:
    def setrlimit(name: str, soft: int, hard: int | None = None) -> None:
        which = getattr(resource, name, None)
        if which is None:
            return
        _, current_hard = resource.getrlimit(which)
        hard = current_hard if hard is None else hard
        if current_hard != resource.RLIM_INFINITY:
            soft = min(soft, current_hard)
            hard = min(hard, current_hard)
        try:
            resource.setrlimit(which, (soft, hard))
            walls.rlimits.append(name)
        except (ValueError, OSError):
            pass  # not permitted here: the deadline and the host's kill still bound the package

    vm = _address_space_bytes()
    if vm is not None:
        setrlimit("RLIMIT_AS", vm + memory_bytes)
    used = resource.getrusage(resource.RUSAGE_SELF)
    setrlimit("RLIMIT_CPU", int(used.ru_utime + used.ru_stime + cpu_s) + 1)
    setrlimit("RLIMIT_FSIZE", file_bytes)
    setrlimit("RLIMIT_CORE", 0, 0)


def _address_space_bytes() -> int | None:
    """This process's current virtual size, or None where /proc does not tell."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _landlock(workdir: Path) -> int:
    """Restrict reads and writes (see the module docstring); returns the ABI used (0: none)."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    abi = syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        return 0
    fs_write = _FS_WRITE | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    fs_read = _FS_READ_FILE | _FS_READ_DIR
    handled_fs = fs_write | fs_read | _FS_EXECUTE | (_FS_IOCTL_DEV if abi >= 5 else 0)
    handled = (ctypes.c_uint64 * 3)(handled_fs, _NET_TCP if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(handled), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return 0
    try:
        rules = [(str(workdir), fs_write | fs_read)] + [(root, fs_read) for root in readable_roots()]
        if not all(_allow(syscall, ruleset, path, access) for path, access in rules):
            return 0
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return 0
        if syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            return 0
    finally:
        os.close(ruleset)
    return int(abi)


def _allow(syscall: Callable[..., int], ruleset: int, path: str, access: int) -> bool:
    """Add one path-beneath rule (a file gets only the rights that apply to files)."""
    beneath = _PathBeneath()
    beneath.parent_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        beneath.allowed_access = access if os.path.isdir(path) else access & _FILE_RIGHTS
        return syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(beneath), 0) == 0
    finally:
        os.close(beneath.parent_fd)


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _AuditGuard:
    """PEP 578 hook: refuse what a package has no business doing (see the module docstring)."""

    def __init__(self, workdir: Path) -> None:
        self._root = os.path.realpath(workdir)

    def _inside(self, path: object) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor: its opening was checked
        if not isinstance(path, str | bytes | os.PathLike):
            return False
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):  # a __fspath__ that returns neither str nor bytes, an embedded NUL
            return False
        return real == self._root or real.startswith(self._root + os.sep)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(_DENIED_EVENTS):
            raise PermissionError(f"sandboxed package code may not {event}")
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, 0))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
            if writes and not self._inside(path):
                raise PermissionError(f"sandboxed package code may not write {path!r}")
            return
        count = _PATH_EVENTS.get(event)
        if count and not all(self._inside(p) for p in args[:count]):
            raise PermissionError(f"sandboxed package code may not {event} outside its folder")
