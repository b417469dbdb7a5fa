"""Loading generated source: one file per module in the on-disk cache, compiled by Numba.

The file name carries a hash of the source and of the versions that shape the compiled
code (Python, NumPy, Numba, graphc); Numba's own ``cache=True`` then keeps the machine
code beside it, so a second process with the same graph pays no compile cost.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickletools
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

import numba
import numpy as np

from ..version import __version__


def cache_dir() -> Path:
    """``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else ``~/.cache/graphc``."""
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphc"


def cache_key(source: str) -> str:
    versions = f"{sys.version_info[:3]}|numpy {np.__version__}|numba {numba.__version__}|graphc {__version__}"
    return hashlib.sha256((versions + "\n" + source).encode()).hexdigest()


def module_path(source: str, stem: str = "graphc") -> Path:
    return cache_dir() / f"{stem}_{cache_key(source)[:20]}.py"


_LOCK = threading.RLock()  # a module is in sys.modules before it has finished executing
generation = 0  # advanced by drop and clear_cache: compile's in-process memo keys on it


def load(source: str, stem: str = "graphc") -> tuple[ModuleType, bool]:
    """Import ``source`` from the cache (writing it first if needed); returns (module, was_cached)."""
    with _LOCK:
        return _load(source, stem)


def _load(source: str, stem: str) -> tuple[ModuleType, bool]:
    path = module_path(source, stem)
    name = "graphc_generated_" + path.stem
    if name in sys.modules:
        return sys.modules[name], True
    cached = _intact(path, source)
    if not cached:
        _write(path, source)
    elif not _numba_cache_readable(path):
        _drop_numba_cache(path)  # Numba would raise UnpicklingError on the first call
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: numba's cache locates functions through it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module, cached and _has_numba_cache(path)


def _intact(path: Path, source: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == source
    except (OSError, UnicodeDecodeError):
        return False


def _write(path: Path, source: str) -> None:
    """Write atomically; a stale or corrupt file and its machine code are replaced.

    A missing file is created with ``os.link``, which fails if another process created it
    meanwhile: the racers then share one file (one mtime, which Numba's index records)
    instead of each replacing it and making the other's machine code look stale.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            if _intact(path, source):
                return  # another process wrote it first
        except OSError:
            pass  # no hard links here: replace
        _drop_numba_cache(path)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _numba_files(path: Path) -> list[Path]:
    pycache = path.parent / "__pycache__"
    return sorted(pycache.glob(path.stem + ".*")) if pycache.is_dir() else []


def _has_numba_cache(path: Path) -> bool:
    return any(p.suffix == ".nbi" for p in _numba_files(path))


def _numba_cache_readable(path: Path) -> bool:
    """Whether every index (.nbi) and data file (.nbc) Numba kept for ``path`` is whole.

    Numba does not catch a truncated or garbled entry: it raises from the first call. The
    files are pickles (an index is two); walking their opcodes checks them without running
    or importing anything. Machine code altered in place cannot be detected: Numba keeps
    no checksum.
    """
    for p in _numba_files(path):
        if p.suffix not in (".nbi", ".nbc"):
            continue
        try:
            stream = io.BytesIO(p.read_bytes())
            for _ in range(2 if p.suffix == ".nbi" else 1):
                for _ in pickletools.genops(stream):
                    pass
        except Exception:  # noqa: BLE001 - whatever fails to parse is rebuilt
            return False
        if stream.read():  # bytes after the last pickle
            return False
    return True


def _drop_numba_cache(path: Path) -> None:
    for p in _numba_files(path):
        p.unlink(missing_ok=True)


def drop(source: str, stem: str = "graphc") -> None:
    """Forget one module's compiled code (used when Numba's cache entry is unreadable)."""
    global generation
    path = module_path(source, stem)
    sys.modules.pop("graphc_generated_" + path.stem, None)
    _drop_numba_cache(path)
    generation += 1


def cache_info() -> dict:
    root = cache_dir()
    files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    return {"path": str(root), "modules": sum(p.suffix == ".py" for p in files),
            "plans": sum(p.suffix == ".plan" for p in files),  # graphc/planning/plancache.py
            "files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def clear_cache() -> int:
    """Delete every cached module, its machine code and the cached plans; returns how many files went."""
    global generation
    generation += 1
    info = cache_info()
    root = cache_dir()
    if root.is_dir():
        shutil.rmtree(root)
    return info["files"]
