"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

A reader never sees a half-written file, and a crash leaves either the old file or the new one.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_open", "atomic_path", "write_text_atomic", "write_bytes_atomic", "write_csv_atomic",
           "swap_in_folder", "commit_files", "staged_files", "KEEP_ACROSS_RERUNS"]

#: Files of a field's output folder that are a person's work, not the analysis': carried into the new folder
#: when the field is analysed again (a reviewer's journal and reviewed tables; docs/napari.md). When the new
#: analysis' nuclei table differs from the old one they no longer fit it: they are kept beside it as
#: ``<name>.stale`` (not replayed, never lost; :data:`STALE_SUFFIX`).
KEEP_ACROSS_RERUNS = ("review.*.jsonl", "nuclei.reviewed.*.csv", "spots.reviewed.*.csv", "*.stale")
STALE_SUFFIX = ".stale"


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.is_file() and b.is_file() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _umask_mode() -> int:
    """File mode an ordinary ``open()`` would create (0666 minus the umask); mkstemp uses 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _mkstemp_beside(path: Path, prefix: str, suffix: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    return tmp


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` when it names no file (a full disk fails a write, not an open)."""
    if exc.filename is None:
        return OSError(exc.errno, exc.strerror or str(exc), str(path))
    return exc


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in_folder(tmp: "str | os.PathLike", final: "str | os.PathLike", *, overwrite: bool = True) -> None:
    """Rename the finished folder ``tmp`` into place as ``final``, never losing what ``final`` held.

    * ``final`` absent: a rename (refused, not replaced, if another process created it meanwhile);
    * ``final`` present and ``overwrite``: the person's work in it (:data:`KEEP_ACROSS_RERUNS`, e.g. review
      journals) is copied into ``tmp`` first (as ``<name>.stale`` when the nuclei table changed); then the two are exchanged in one step where the file system can
      (Linux), else ``final`` is moved aside and ``tmp`` renamed in, and when that rename fails the old folder is
      moved back; the old folder is removed only once the new one is in place;
    * ``final`` present and not ``overwrite``: :class:`FileExistsError`.

    On an error ``tmp`` is left for the caller to remove.
    """
    import shutil
    import uuid

    tmp, final = Path(tmp), Path(final)
    if not final.exists():
        try:
            os.rename(tmp, final)  # a directory rename fails over a non-empty folder: never a silent replace
        except OSError as exc:
            if final.exists():
                raise FileExistsError(17, "exists (written by another process meanwhile)", str(final)) from None
            raise _named(exc, final) from None
        return
    if not overwrite:
        raise FileExistsError(17, "exists", str(final))
    fits = _same_bytes(final / "nuclei.csv", tmp / "nuclei.csv")  # the new analysis found the same nuclei
    for pattern in KEEP_ACROSS_RERUNS:
        for f in final.glob(pattern):
            name = f.name if fits or f.name.endswith(STALE_SUFFIX) else f.name + STALE_SUFFIX
            if f.is_file() and not (tmp / name).exists():
                shutil.copy2(f, tmp / name)
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
        return
    # the folder's name in the aside one (when it fits the file system's limit): a run killed between the two
    # renames finds it there and puts it back (fishcount.batch._cleanup_stale)
    tag = uuid.uuid4().hex[:8]
    aside = final.parent / (f".trash-{tag}-{final.name}" if len(final.name.encode()) <= 200 else f".trash-{tag}")
    os.rename(final, aside)
    try:
        os.rename(tmp, final)
    except OSError as exc:
        os.rename(aside, final)  # the old result back in place
        raise _named(exc, final) from None
    shutil.rmtree(aside, ignore_errors=True)


def commit_files(pairs: "list[tuple[str | os.PathLike, str | os.PathLike]]", *, overwrite: bool) -> None:
    """Rename finished temporary files into place as one set (a table, its text and its plots): either every
    target gets its new file, or, when a rename fails, the targets are put back as they were (old files restored,
    new ones removed). Without ``overwrite`` an existing target is :class:`FileExistsError` before any rename.
    The temporary files are removed on an error."""
    import uuid

    pairs = [(Path(a), Path(b)) for a, b in pairs]
    try:
        if not overwrite:
            for _, final in pairs:
                if final.exists():
                    raise FileExistsError(17, "exists", str(final))
        backups: list[tuple[Path, Path]] = []
        done: list[Path] = []
        try:
            for tmp, final in pairs:
                if final.exists():
                    aside = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
                    os.replace(final, aside)
                    backups.append((aside, final))
                os.replace(tmp, final)
                done.append(final)
        except OSError as exc:
            for final in done:
                with contextlib.suppress(OSError):
                    os.unlink(final)
            for aside, final in backups:
                with contextlib.suppress(OSError):
                    os.replace(aside, final)
            raise _named(exc, final) from None
        for aside, _ in backups:
            with contextlib.suppress(OSError):
                os.unlink(aside)
    finally:
        for tmp, _ in pairs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@contextlib.contextmanager
def staged_files(finals: "list[str | os.PathLike]", *, overwrite: bool) -> "Iterator[list[Path]]":
    """Yield temporary paths beside ``finals`` (same suffixes) to write a set of files into; when the block
    succeeds they are renamed in as one set (:func:`commit_files`), when it fails they are removed and the
    targets are untouched. Without ``overwrite`` an existing target is :class:`FileExistsError` before anything
    is written."""
    targets = [Path(f) for f in finals]
    if not overwrite:
        for f in targets:
            if f.exists():
                raise FileExistsError(17, "exists", str(f))
    tmps: list[Path] = []
    try:
        for f in targets:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(Path(_mkstemp_beside(f, f".{f.name}.", f.suffix or ".tmp")))
        yield tmps
    except BaseException:
        for t in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(t)
        raise
    commit_files(list(zip(tmps, targets)), overwrite=overwrite)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a read-only folder or a full disk: the message names the file meant, not the temporary one
        tmp = _mkstemp_beside(path, f".{path.name}.", ".tmp")
    except OSError as exc:
        raise _named(OSError(exc.errno, exc.strerror or str(exc)), path) from None
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: the message names the file meant, not the temporary one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _named(OSError(exc.errno, exc.strerror or str(exc)), path) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a library that writes by file name
    (tifffile, matplotlib, pyarrow); rename it over ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a read-only folder or a full disk: the message names the file meant, not the temporary one
        tmp = _mkstemp_beside(path, f".{path.stem}.", path.suffix or ".tmp")
    except OSError as exc:
        raise _named(OSError(exc.errno, exc.strerror or str(exc)), path) from None
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: the message names the file meant, not the temporary one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _named(OSError(exc.errno, exc.strerror or str(exc)), path) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_csv_atomic(df, path: str | os.PathLike, **kwargs) -> None:
    """Write a pandas DataFrame as CSV atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        df.to_csv(fh, **kwargs)
