"""Real filesystems that fail on demand, for the store fault tests (root only; no mocks of SQLite or the kernel).

* :class:`Tmpfs`: a size-limited tmpfs; :meth:`Tmpfs.fill` takes every free byte (writes then fail with ``ENOSPC``,
  which SQLite reports as ``SQLITE_FULL``), :meth:`Tmpfs.free` deletes the filler, :meth:`Tmpfs.grow` remounts it
  larger.
* :class:`Ext4Loop`: an ext4 filesystem in a loop-mounted image file, mounted ``errors=remount-ro``.
  :meth:`Ext4Loop.fail_readonly` reports a filesystem error through the kernel's own ``trigger_fs_error`` (the
  filesystem turns read-only at once, as after a real metadata error: writes fail with ``EROFS``);
  :meth:`Ext4Loop.shut_down` issues ``EXT4_IOC_SHUTDOWN`` (every I/O then fails with ``EIO``, as when the disk goes
  away). Both heal only by unmounting and mounting again (:meth:`Ext4Loop.repair`), which the kernel allows only
  once no process holds a file open there: that checks the store released its files.

The tests that use them fail loudly, never skip, where mounting is impossible (:func:`require_mount`): CI runs as
root on the same machine kind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

EXT4_IOC_SHUTDOWN = (2 << 30) | (4 << 16) | (ord("X") << 8) | 125
"""``_IOR('X', 125, __u32)`` (linux/fs/ext4/ext4.h)."""
EXT4_GOING_FLAGS_DEFAULT = 0
"""Write back what the page cache holds, then shut down (committed data is on disk, as after the kernel's periodic
writeback; the fault is then purely "every later I/O fails")."""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def require_mount() -> None:
    """Fail (not skip) when this process cannot mount filesystems: the fault tests need root and ``mount``."""
    missing = [tool for tool in ("mount", "umount", "mkfs.ext4", "e2fsck") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        raise RuntimeError(f"the store fault tests mount real filesystems: they need root (euid {os.geteuid()}) and "
                           f"mount, umount, mkfs.ext4, e2fsck (missing: {missing or 'none'})")


class Tmpfs:
    """A tmpfs of ``size`` bytes mounted at ``path`` (a fresh directory)."""

    def __init__(self, path: Path, size: int) -> None:
        require_mount()
        self.path = path
        self.size = size
        path.mkdir(parents=True, exist_ok=True)
        out = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
        if out.returncode != 0:
            raise RuntimeError(f"cannot mount a tmpfs at {path}: {out.stderr.strip()}")
        self._filler = path / "filler"

    def fill(self) -> int:
        """Write a filler file until the filesystem is full; returns the bytes taken."""
        written = 0
        chunk = b"\0" * 65536
        with open(self._filler, "ab", buffering=0) as f:
            while True:
                try:
                    written += f.write(chunk) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            for size in (4096, 512, 1):  # the tail of the last page
                while True:
                    try:
                        written += f.write(b"\0" * size) or 0
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        return written

    def free(self) -> None:
        """Delete the filler."""
        self._filler.unlink(missing_ok=True)

    def grow(self, size: int) -> None:
        """Remount with a larger size, files kept."""
        out = _run("mount", "-o", f"remount,size={size}", str(self.path))
        if out.returncode != 0:
            raise RuntimeError(f"cannot grow the tmpfs at {self.path}: {out.stderr.strip()}")
        self.size = size

    def umount(self) -> None:
        """Unmount (lazily if something still holds it, so a failing test never leaves a mount behind)."""
        if _run("umount", str(self.path)).returncode != 0:
            _run("umount", "-l", str(self.path))


class Ext4Loop:
    """An ext4 image of ``size_mb`` MiB in ``workdir``, loop-mounted ``errors=remount-ro`` at ``workdir/mnt``."""

    def __init__(self, workdir: Path, size_mb: int = 32) -> None:
        require_mount()
        self.image = workdir / "ext4.img"
        self.path = workdir / "mnt"
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(size_mb * 2**20)
        out = _run("mkfs.ext4", "-q", "-F", str(self.image))
        if out.returncode != 0:
            raise RuntimeError(f"mkfs.ext4 failed: {out.stderr.strip()}")
        self.mount()

    def mount(self, readonly: bool = False) -> None:
        """Mount the image (a free loop device is taken and released again at unmount)."""
        out = _run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path))
        if out.returncode != 0:
            raise RuntimeError(f"cannot loop-mount {self.image}: {out.stderr.strip()} (losetup -a: "
                               f"{_run('losetup', '-a').stdout.strip()})")
        if readonly:  # remounted, so that the loop device itself stays writable (remount,rw works later)
            out = _run("mount", "-o", "remount,ro", str(self.path))
            if out.returncode != 0:
                raise RuntimeError(f"cannot remount {self.path} read-only: {out.stderr.strip()}")

    @property
    def device(self) -> str:
        """The loop device's name (``loop3``)."""
        return Path(_run("findmnt", "-n", "-o", "SOURCE", str(self.path)).stdout.strip()).name

    def sync(self) -> None:
        """``syncfs``: write back what the page cache holds for this filesystem (the kernel does it within ~30 s)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
                raise OSError(ctypes.get_errno(), "syncfs failed")
        finally:
            os.close(fd)

    def fail_readonly(self) -> None:
        """A filesystem error reported the kernel's way: ext4 turns read-only (``EROFS`` on every write)."""
        Path(f"/sys/fs/ext4/{self.device}/trigger_fs_error").write_text("otel-ml store fault test\n")

    def shut_down(self) -> None:
        """``EXT4_IOC_SHUTDOWN`` after writing back the page cache: every later I/O fails with ``EIO``."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_DEFAULT))
        finally:
            os.close(fd)

    def try_umount(self) -> bool:
        """Unmount if nothing holds a file open there (returns False while something does)."""
        return _run("umount", str(self.path)).returncode == 0

    def repair(self, timeout: float = 30.0, readonly: bool = False) -> float:
        """Unmount (waiting until the store released its files), ``e2fsck -fy``, mount again; seconds waited.

        Raises:
            TimeoutError: Something kept a file open on the filesystem for ``timeout`` seconds.
        """
        start = time.monotonic()
        while not self.try_umount():
            if time.monotonic() - start > timeout:
                holders = _run("fuser", "-vm", str(self.path))
                raise TimeoutError(f"{self.path} still busy after {timeout}s: {holders.stdout} {holders.stderr}")
            time.sleep(0.05)
        waited = time.monotonic() - start
        fsck = _run("e2fsck", "-fy", str(self.image))
        if fsck.returncode not in (0, 1):  # 1: errors corrected
            raise RuntimeError(f"e2fsck failed ({fsck.returncode}): {fsck.stdout} {fsck.stderr}")
        self.mount(readonly=readonly)
        return waited

    def remount_rw(self) -> None:
        """``mount -o remount,rw`` (after :meth:`repair` with ``readonly=True``)."""
        out = _run("mount", "-o", "remount,rw", str(self.path))
        if out.returncode != 0:
            raise RuntimeError(f"cannot remount {self.path} read-write: {out.stderr.strip()}")

    def umount(self) -> None:
        """Unmount for good (lazily if something still holds it)."""
        with contextlib.suppress(OSError):
            if not self.try_umount():
                _run("umount", "-l", str(self.path))
