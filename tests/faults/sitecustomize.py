"""Fault injection for ``tests/test_faults.py``, loaded through PYTHONPATH in a subprocess only.

A read-only folder or a full disk cannot be made portably in a test (root
ignores permissions; a small file system needs mounting), so the command under
test sees them through patched file functions, chosen by environment variables:

* ``ANATOMICS_FAULT_READONLY=DIR``: writing, creating or renaming anything in
  DIR fails with ``EROFS`` (a read-only mount);
* ``ANATOMICS_FAULT_NOSPACE=DIR``: the same with ``ENOSPC`` (a full disk);
* ``ANATOMICS_FAULT_FREE_BYTES=N``: ``shutil.disk_usage`` reports N bytes free.
"""

import builtins
import errno
import io
import os
import shutil

_ROOTS = [
    (os.path.abspath(os.environ[name]), code)
    for name, code in (
        ("ANATOMICS_FAULT_READONLY", errno.EROFS),
        ("ANATOMICS_FAULT_NOSPACE", errno.ENOSPC),
    )
    if os.environ.get(name)
]
_FREE = os.environ.get("ANATOMICS_FAULT_FREE_BYTES")


def _check(*paths):
    for path in paths:
        if not isinstance(path, (str, bytes, os.PathLike)):
            continue
        full = os.path.abspath(os.fsdecode(path))
        for root, code in _ROOTS:
            if full == root or full.startswith(root + os.sep):
                raise OSError(code, os.strerror(code), os.fsdecode(path))


if _ROOTS:
    _open, _os_open = builtins.open, os.open

    def _patched_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            _check(file)
        return _open(file, mode, *args, **kwargs)

    def _patched_os_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _check(path)
        return _os_open(path, flags, mode, dir_fd=dir_fd)

    builtins.open = io.open = _patched_open
    os.open = _patched_os_open

    def _guard(function, n_paths):
        def guarded(*args, **kwargs):
            _check(*args[:n_paths])
            return function(*args, **kwargs)

        return guarded

    os.mkdir = _guard(os.mkdir, 1)
    os.replace = _guard(os.replace, 2)
    os.rename = _guard(os.rename, 2)
    os.unlink = _guard(os.unlink, 1)
    os.remove = _guard(os.remove, 1)
    os.rmdir = _guard(os.rmdir, 1)

if _FREE is not None:
    _usage = shutil.disk_usage

    def _disk_usage(path):
        total, used, _ = _usage(path)
        return shutil._ntuple_diskusage(total, used, int(_FREE))

    shutil.disk_usage = _disk_usage
