"""Atomic file writes, their temporary names, cheap "is this file complete" checks, and the VOC palette.

Every stage output goes through these helpers: the data is written to a temporary name in the
same folder and renamed into place, so a killed run never leaves a half-written file, and
"the output file exists" is a safe test for "this item is finished" on resume. A kill -9 during a
write leaves the temporary file behind: :func:`remove_stale_temp_files` (called when a stage
starts) removes those whose writer is gone. Temporary names are
``.<name>.<host>-<pid>.<random>.tmp``, so a writer that is still alive (another process on the
same work dir, another DDP rank) keeps its file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from advcam_pl.errors import CorruptFileError

log = logging.getLogger(__name__)

# What the project writes (the targets of its temporary files); others' files are never touched.
OWN_SUFFIXES = (".npz", ".png", ".json", ".ckpt", ".pth", ".tar.gz")
# A temporary file of another host is left alone unless it has not changed for this long.
STALE_SECONDS = 3600
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)(?:\.[A-Za-z0-9_]+)?\.tmp$")
# Names of earlier versions: mkstemp's ".<name>.<8 random>.tmp" and the checkpoint's ".<name>.tmp".
_LEGACY_TEMP = re.compile(r"^\.(?P<target>.+?)(?:\.[a-z0-9_]{8})?\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0])[:32] or "host"


def temp_prefix(path: str | os.PathLike) -> str:
    """``.<name>.<host>-<pid>.``: the start of this process's temporary names for ``path``."""
    return f".{Path(path).name}.{_host()}-{os.getpid()}."


def temp_path(path: str | os.PathLike) -> Path:
    """A temporary name beside ``path`` for this process (not created; for writers that open the
    file themselves, e.g. ``trainer.save_checkpoint``)."""
    path = Path(path)
    return path.with_name(f"{temp_prefix(path)}{os.urandom(4).hex()}.tmp")


def temp_target(name: str) -> str | None:
    """The file name a temporary file ``name`` of this project stands for, else None."""
    match = _TEMP.match(name) or _LEGACY_TEMP.match(name)
    if match is None or not match["target"].endswith(OWN_SUFFIXES):
        return None
    return match["target"]


def _writer_gone(path: Path) -> bool:
    match = _TEMP.match(path.name)
    if match is None:  # an earlier version's name: no writer of this version owns it
        return True
    if match["host"] != _host():
        return time.time() - path.stat().st_mtime > STALE_SECONDS
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_temp_files(folder: str | os.PathLike, target: str | None = None,
                            recursive: bool = False) -> list[Path]:
    """Remove the temporary files of this project's writes in ``folder`` (of ``target`` only, when
    given; in subfolders too with ``recursive``) whose writer process is gone; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        name = temp_target(path.name)
        if name is None or (target is not None and name != target):
            continue
        try:
            if path.is_file() and _writer_gone(path):
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
    if removed:
        log.info("removed %d temporary file(s) of killed writes in %s (e.g. %s)", len(removed), folder,
                 removed[0].name)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it to ``path``;
    on any failure the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` to ``path`` (an ``.npz``; no pickling) atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def atomic_save_json(path: str | os.PathLike, obj: Any) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    return atomic_write(path, write)


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map as a flat ``[r, g, b, ...]`` list (bit-interleaved)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.extend((r, g, b))
    return palette


def palette_image(mask: np.ndarray) -> Image.Image:
    """``mask`` [H, W] uint8 class indices → a mode-"P" PIL image with the VOC palette."""
    if mask.ndim != 2:
        raise ValueError(f"expected a [H, W] label map, got shape {mask.shape}")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(voc_palette())
    return image


def atomic_save_palette_png(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a [H, W] uint8 label map as a VOC palette PNG, atomically."""
    image = palette_image(mask)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`atomic_save_npz` into a plain dict (no pickle).

    A file that is not a complete ``.npz`` raises :class:`~advcam_pl.errors.CorruptFileError`
    naming it (numpy's own errors do not)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as err:
        raise CorruptFileError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from err


# -- "this output file is complete": cheap checks, no full decode -------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def zip_members(path: str | os.PathLike) -> list[str] | None:
    """The member names of a zip archive (``.npz``, a torch checkpoint), or None when ``path`` is
    missing, truncated or no zip (reads only the central directory at the end)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None


def npz_is_complete(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> bool:
    """Whether ``path`` is a complete ``.npz`` holding (at least) ``keys``."""
    members = zip_members(path)
    return members is not None and all(f"{k}.npy" in members for k in keys)


def png_is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with the PNG signature and ends with the IEND chunk."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_PNG_SIGNATURE))
            f.seek(0, os.SEEK_END)
            if f.tell() < len(_PNG_SIGNATURE) + len(_PNG_END):
                return False
            f.seek(-len(_PNG_END), os.SEEK_END)
            return head == _PNG_SIGNATURE and f.read() == _PNG_END
    except OSError:
        return False


def torch_file_is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete torch zip archive (``torch.save``'s format) with its pickle."""
    members = zip_members(path)
    return members is not None and any(m.endswith("/data.pkl") or m == "data.pkl" for m in members)


def file_is_complete(path: str | os.PathLike) -> bool:
    """The check for ``path``'s kind (by suffix): ``.npz`` and checkpoints open as archives, a PNG
    ends with IEND, a JSON parses; any other file only has to exist."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix == ".npz":
        return npz_is_complete(path)
    if path.suffix == ".png":
        return png_is_complete(path)
    if path.suffix in (".ckpt", ".pth", ".pt"):
        return torch_file_is_complete(path)
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            return False
    return True
