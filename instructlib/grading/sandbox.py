"""Exercises: the sandbox a student's kernel runs in (docs/grading.md, "Threat model").

The grader starts each kernel through this module's wrapper (``python -m
instructlib.grading.sandbox CONFIG -- kernel argv``). Run as root, the wrapper puts the kernel in
private mount, network and IPC namespaces (fresh ``/tmp``, ``/var/tmp``, ``/dev/shm``; the key, the
submissions and the gradebook hidden under empty mounts; ``/proc`` showing only its own processes;
no network), sets resource limits, drops to an unprivileged uid of its own (no passwd entry
needed) with ``no_new_privs``, and execs the kernel in an empty home. Afterwards the grader kills
every process of that uid (:func:`kill_uid`), whatever session or process group it moved to.
Without root only the limits and a marker-based kill remain; :func:`detect` says which level applies.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import pwd
import resource
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

UID_RANGE = range(61000, 61184)  # below systemd's DynamicUser range (61184-65519); no passwd entry
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # world-writable: fresh per kernel
MARKER = "INSTRUCTLIB_SANDBOX"  # env var naming the kernel, for the kill without root
CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x40000000, 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE, MS_MOVE = (
    1, 2, 4, 8, 4096, 0x4000, 1 << 18, 8192)
PR_SET_NO_NEW_PRIVS = 38
ERROR_FILE = "sandbox-error.txt"


@dataclass(frozen=True)
class Limits:
    """Resource limits of one kernel and everything it starts."""

    memory_mb: int = 4096  # address space per process (RLIMIT_AS)
    cpu_s: int = 600  # CPU seconds per process (RLIMIT_CPU)
    processes: int = 256  # processes and threads of the sandbox uid (RLIMIT_NPROC; needs root)
    file_mb: int = 64  # largest file a process may write (RLIMIT_FSIZE)
    tmp_mb: int = 256  # size of each private tmpfs (home, /tmp, ...; needs namespaces)


@dataclass
class Level:
    """What isolation this machine allows: a separate uid and/or private namespaces."""

    uid: bool
    namespaces: bool
    reason: str = ""  # why something is missing

    def describe(self) -> str:
        """One line for the grader's log."""
        if self.uid and self.namespaces:
            return "sandbox: own uid per kernel, private mount/network/IPC namespaces, resource limits"
        if self.uid:
            return f"sandbox: own uid per kernel and resource limits; no private namespaces ({self.reason})"
        return (f"sandbox: resource limits only, kernels run as the grader's user ({self.reason}); "
                "see docs/grading.md before grading untrusted submissions")


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def detect() -> Level:
    """Probe (in a throw-away child) whether kernels can get their own uid and namespaces."""
    if os.geteuid() != 0:
        return Level(False, False, "the grader is not root")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = b"0"
        try:
            if _libc().unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) == 0:
                _mount(None, "/", None, MS_REC | MS_PRIVATE)
                _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
                ok = b"1"
        except BaseException:  # noqa: BLE001
            pass
        os.write(w, ok)
        os._exit(0)
    os.close(w)
    ok = os.read(r, 1) == b"1"
    os.close(r)
    os.waitpid(pid, 0)
    return Level(True, ok, "" if ok else "unshare/mount not permitted (no CAP_SYS_ADMIN?)")


# ---------------------------------------------------------------- uids


def _status_uid_state(pid: str) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    uid = state = None
    for line in text.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
        elif line.startswith("State:"):
            state = line.split()[1]
    return (uid, state) if uid is not None and state else None


def pids_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is ``uid``."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (info := _status_uid_state(pid)) and info[0] == uid and info[1] not in "ZX":
            out.append(int(pid))
    return out


class UidPool:
    """Unprivileged uids for concurrent kernels, each locked (flock) against other graders."""

    def __init__(self, n: int):
        self.locks: dict[int, int] = {}
        for uid in UID_RANGE:
            if len(self.locks) == n:
                break
            try:
                pwd.getpwuid(uid)
                continue  # a real account: never ours
            except KeyError:
                pass
            fd = os.open(Path(tempfile.gettempdir()) / f"instructlib-sandbox-{uid}.lock",
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if pids_of_uid(uid):
                os.close(fd)
                continue
            self.locks[uid] = fd
        if len(self.locks) < n:
            self.close()
            raise RuntimeError(f"no {n} free uids in {UID_RANGE.start}-{UID_RANGE.stop - 1}")
        self.free = list(self.locks)

    def close(self) -> None:
        """Release the uid locks."""
        for fd in self.locks.values():
            os.close(fd)
        self.locks = {}


def kill_uid(uid: int, rounds: int = 100) -> list[int]:
    """SIGKILL every process of ``uid`` (``kill(-1)`` from that uid); return the survivors (none)."""
    left: list[int] = []
    for _ in range(rounds):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                for _ in range(1000):
                    os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except us
            except ProcessLookupError:
                os._exit(0)
            except BaseException:  # noqa: BLE001
                os._exit(2)
            os._exit(1)
        os.waitpid(pid, 0)
        left = pids_of_uid(uid)
        if not left:
            return []
        time.sleep(0.01)
    return left


def kill_marked(token: str, rounds: int = 20) -> list[int]:
    """Without root: SIGKILL the grader's processes whose environment carries ``MARKER=token``."""
    needle = f"{MARKER}={token}".encode()
    left: list[int] = []
    for _ in range(rounds):
        left = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if needle not in f.read().split(b"\0"):
                        continue
                info = _status_uid_state(pid)
                if info and info[1] not in "ZX":
                    os.kill(int(pid), signal.SIGKILL)
                    left.append(int(pid))
            except (OSError, ProcessLookupError):
                continue
        if not left:
            return []
        time.sleep(0.02)
    return left


def remove_files_of(uid: int, dirs: tuple[str, ...] = PRIVATE_DIRS) -> None:
    """Without namespaces: delete what ``uid`` left in the shared world-writable folders."""
    import shutil

    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    os.unlink(e.path)
            except OSError:
                continue


def readable_by(uid: int, paths: list[str]) -> list[str]:
    """Which of ``paths`` a process running as ``uid`` can open (files) or list (folders)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        found = []
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            for p in paths:
                try:
                    if os.path.isdir(p):
                        os.listdir(p)
                    else:
                        os.close(os.open(p, os.O_RDONLY))
                    found.append(p)
                except OSError:
                    pass
        except BaseException:  # noqa: BLE001
            pass
        os.write(w, json.dumps(found).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b"[]")


# ---------------------------------------------------------------- the wrapper (runs as the kernel)


@dataclass
class Config:
    """What the wrapper needs: the kernel's folders, uid, namespaces, hidden paths and limits."""

    work: str  # shared with the grader: connection file and ipc sockets
    home: str  # the kernel's cwd, HOME and IPYTHONDIR parent
    uid: int | None
    namespaces: bool
    hide: list[str] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)  # must stay readable (Python, packages, cache)
    limits: Limits = field(default_factory=Limits)

    def argv(self) -> list[str]:
        """The wrapper command to put before the kernel's own argv."""
        return [sys.executable, "-m", "instructlib.grading.sandbox", json.dumps(asdict(self)), "--"]


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)  # noqa: E731
    if _libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _enter_namespaces(cfg: Config) -> None:
    """Private mounts (fresh tmpfs dirs, hidden paths, own /proc view), no network, own IPC."""
    if _libc().unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    tmp = f"size={cfg.limits.tmp_mb}m"
    for d in PRIVATE_DIRS:
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        keep = [(p, flags) for p, flags in [(cfg.work, MS_BIND)] + [(os.path.realpath(e), MS_BIND | MS_REC)
                                                                    for e in cfg.expose if os.path.exists(e)]
                if not os.path.relpath(p, d).startswith("..")]
        if not keep:
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"{tmp},mode=1777")
            continue
        # work (or a needed path, e.g. a clone in /tmp) lives under d: build the new tmpfs on a
        # staging point, bind those paths into it, then move it onto d
        _mount("tmpfs", cfg.home, "tmpfs", MS_NOSUID | MS_NODEV, f"{tmp},mode=1777")
        for path, flags in keep:
            inner = os.path.join(cfg.home, os.path.relpath(path, d))
            os.makedirs(inner, exist_ok=True)
            _mount(path, inner, None, flags)
        _mount(cfg.home, d, None, MS_MOVE)
    _expose(cfg)
    uid = cfg.uid if cfg.uid is not None else os.getuid()
    _mount("tmpfs", cfg.home, "tmpfs", MS_NOSUID | MS_NODEV, f"{tmp},mode=0700,uid={uid},gid={uid}")
    for p in cfg.hide:
        if os.path.isdir(p):
            _mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=000")
        elif os.path.exists(p):
            _mount("/dev/null", p, None, MS_BIND)
    try:  # a /proc that shows the sandbox only its own processes (no argv of the grader or siblings)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    except OSError:
        pass


def _closed_ancestor(path: str) -> str | None:
    """The highest ancestor of ``path`` that others may not enter (e.g. ``/root`` holding pyenv)."""
    parts = Path(path).parts
    for i in range(2, len(parts)):
        anc = os.path.join(*parts[:i])
        try:
            if not os.stat(anc).st_mode & 0o001:
                return anc
        except OSError:
            return None
    return None


def _expose(cfg: Config) -> None:
    """Replace each private ancestor of a needed path by a tmpfs holding just the needed paths."""
    groups: dict[str, list[str]] = {}
    for p in cfg.expose:
        if os.path.exists(p) and (anc := _closed_ancestor(os.path.realpath(p))):
            groups.setdefault(anc, []).append(os.path.realpath(p))
    for anc, paths in groups.items():
        _mount("tmpfs", cfg.home, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for p in paths:
            inner = os.path.join(cfg.home, os.path.relpath(p, anc))
            os.makedirs(inner, exist_ok=True)
            _mount(p, inner, None, MS_BIND | MS_REC)
        _mount(cfg.home, anc, None, MS_MOVE)


def _set_limits(cfg: Config) -> None:
    lim, mb = cfg.limits, 1024 * 1024
    pairs = [(resource.RLIMIT_CPU, lim.cpu_s), (resource.RLIMIT_FSIZE, lim.file_mb * mb), (resource.RLIMIT_CORE, 0)]
    if lim.memory_mb:
        pairs.append((resource.RLIMIT_AS, lim.memory_mb * mb))
    if cfg.uid is not None:  # counted per real uid: meaningless when sharing the grader's uid
        pairs.append((resource.RLIMIT_NPROC, lim.processes))
    for what, value in pairs:
        resource.setrlimit(what, (value, value))


def main(argv: list[str]) -> None:
    """The wrapper: isolate, limit, drop privileges, exec the kernel (errors go to ``work/ERROR_FILE``)."""
    cfg_dict, cmd = json.loads(argv[0]), argv[2:]
    cfg_dict["limits"] = Limits(**cfg_dict["limits"])
    cfg = Config(**cfg_dict)
    try:
        if cfg.uid is not None:
            for i, arg in enumerate(cmd[:-1]):  # the connection file must be readable by the kernel
                if arg == "-f":
                    os.chown(cmd[i + 1], cfg.uid, cfg.uid)
            os.chown(cfg.work, cfg.uid, cfg.uid)
            os.chown(cfg.home, cfg.uid, cfg.uid)
        if cfg.namespaces:
            _enter_namespaces(cfg)
        _set_limits(cfg)
        if _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if cfg.uid is not None:
            os.setgroups([])
            os.setresgid(cfg.uid, cfg.uid, cfg.uid)
            os.setresuid(cfg.uid, cfg.uid, cfg.uid)
        os.chdir(cfg.home)
        os.makedirs(os.environ.get("IPYTHONDIR", os.path.join(cfg.home, ".ipython")), exist_ok=True)
        os.execv(cmd[0], cmd)
    except BaseException as err:  # noqa: BLE001 - the grader reads this file and reports a grader error
        import traceback
        message = f"sandbox: {type(err).__name__}: {err} (line {traceback.extract_tb(err.__traceback__)[-1].lineno})\n"
        try:
            sys.stderr.write(message)
            with open(os.path.join(cfg.work, ERROR_FILE), "w") as f:
                f.write(message)
        finally:
            os._exit(70)


if __name__ == "__main__":
    main(sys.argv[1:])
