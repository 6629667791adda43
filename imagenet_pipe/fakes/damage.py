"""Damaged and unusual raw downloads: what a bad disk, an interrupted download or an odd file does
to a fake download, so that tests (and users) can check that nothing is lost without a word.

Byte-level helpers take and return the bytes of a tar; archive-level helpers rewrite a file of a
fake download in place (a member of the outer train tar, the devkit, any file cut short); image
helpers return the bytes of a problem image (a decompression bomb, 16- or 32-bit pixels, a JPEG
with bytes after its end marker)::

    from imagenet_pipe.fakes import damage
    damage.edit_member(root / "ILSVRC2012_img_train.tar", "n01440764.tar",
                       lambda tar: damage.break_header_checksum(tar, 2))
    damage.edit_ground_truth(root, lambda lines: lines[1:])   # a line lost: labels would shift
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .common import ARCHIVE_MTIME, tar_bytes, write_tar_file

DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
GROUND_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"
META_MAT = "ILSVRC2012_devkit_t12/data/meta.mat"


# --- tar bytes -------------------------------------------------------------------------------

def tar_infos(data: bytes) -> list[tarfile.TarInfo]:
    """The members of a (valid) tar, with header and data offsets."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def break_header_checksum(data: bytes, index: int) -> bytes:
    """Member ``index``'s header no longer matches its checksum (a flipped bit on disk): tarfile
    stops listing there without an error."""
    out = bytearray(data)
    out[tar_infos(data)[index].offset + 148] ^= 0x01  # first byte of the checksum field
    return bytes(out)


def cut_in_header(data: bytes, index: int) -> bytes:
    """The tar ends 100 bytes into member ``index``'s header."""
    return data[: tar_infos(data)[index].offset + 100]


def cut_in_data(data: bytes, index: int) -> bytes:
    """The tar ends half-way through member ``index``'s data."""
    info = tar_infos(data)[index]
    return data[: info.offset_data + info.size // 2]


def without_end_blocks(data: bytes) -> bytes:
    """The tar ends right after its last member: complete members, no end-of-archive blocks."""
    last = tar_infos(data)[-1]
    return data[: last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE]


def garble_first_header(data: bytes) -> bytes:
    return bytes(range(256)) * 2 + data[tarfile.BLOCKSIZE:]


def with_special_members(data: bytes, specials: dict[str, tuple[str, str]]) -> bytes:
    """The tar with extra non-regular members appended: ``name -> (kind, link target)``, kind one
    of ``symlink``, ``hardlink``, ``fifo``."""
    kinds = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as src, \
            tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as out:
        for info in src.getmembers():
            out.addfile(info, src.extractfile(info) if info.isfile() else None)
        for name, (kind, target) in specials.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime, info.mode = kinds[kind], target, ARCHIVE_MTIME, 0o644
            out.addfile(info)
    return buf.getvalue()


def with_members(data: bytes, extra: list[tuple[str, bytes]]) -> bytes:
    """The tar with regular files appended (e.g. a problem image added to a class tar)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as src:
        members = [(m.name, src.extractfile(m).read()) for m in src.getmembers() if m.isfile()]
    return tar_bytes(members + extra)


# --- files of a download ---------------------------------------------------------------------

def read_members(path: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of every regular member of a tar or .tar.gz."""
    with tarfile.open(path, "r:*") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def edit_member(path: Path, name: str, edit: Callable[[bytes], bytes]) -> None:
    """Rewrite the tar (or .tar.gz) at ``path`` with member ``name``'s bytes passed through ``edit``
    (e.g. a class tar inside ``ILSVRC2012_img_train.tar`` damaged by one of the byte helpers)."""
    members = read_members(path)
    if name not in {n for n, _ in members}:
        raise KeyError(f"{path} has no member {name!r}")
    compressed = path.read_bytes()[:2] == b"\x1f\x8b"
    write_tar_file(path, [(n, edit(d) if n == name else d) for n, d in members], compress=compressed)


def truncate(path: Path, keep: float | int) -> int:
    """Cut a file to ``keep`` bytes (an int) or to that fraction of its size (a float); returns the
    new size. An interrupted download looks like this."""
    size = path.stat().st_size
    new = int(size * keep) if isinstance(keep, float) else keep
    with open(path, "r+b") as f:
        f.truncate(new)
    return new


def edit_ground_truth(root: Path, edit: Callable[[list[str]], list[str]]) -> None:
    """Rewrite the devkit's validation ground truth (one ILSVRC2012_ID per line) through ``edit``."""
    def lines(data: bytes) -> bytes:
        return "".join(f"{line}\n" for line in edit(data.decode().splitlines())).encode()

    edit_member(Path(root) / DEVKIT, GROUND_TRUTH, lines)


# --- problem images --------------------------------------------------------------------------

def bomb_jpeg(width: int = 30_000, height: int = 30_000) -> bytes:
    """A ~1 KB JPEG whose frame header declares ``width`` x ``height`` pixels: a decoder that
    trusts the header allocates width * height * 3 bytes (2.7 GB at 30000 x 30000)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: FFC0, length, precision, height, width
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bomb_png(width: int = 16_000, height: int = 16_000) -> bytes:
    """A real RGB PNG of ``width`` x ``height`` black pixels: small on disk (zlib of zeros), but
    decoding it takes width * height * 3 bytes. Written row block by row block, so building it
    needs little memory."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = bytes(1 + 3 * width) * 256  # filter byte 0 + black pixels, 256 rows at a time
    packer, idat = zlib.compressobj(9), bytearray()
    for start in range(0, height, 256):
        idat += packer.compress(rows if start + 256 <= height else rows[: (height - start) * (1 + 3 * width)])
    idat += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b"")


def _gray(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float64) / 255.0


def png_16bit(img: Image.Image) -> bytes:
    """The image as a 16-bit grayscale PNG over the full 0..65535 range (Pillow mode I;16)."""
    buf = io.BytesIO()
    Image.fromarray(np.round(_gray(img) * 65535).astype(np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def tiff_int32(img: Image.Image) -> bytes:
    """The image as a 32-bit integer grayscale TIFF (Pillow mode I), values 0..65535."""
    buf = io.BytesIO()
    Image.fromarray(np.round(_gray(img) * 65535).astype(np.int32)).save(buf, "TIFF")
    return buf.getvalue()


def tiff_float(img: Image.Image) -> bytes:
    """The image as a 32-bit float grayscale TIFF (Pillow mode F), values 0..1."""
    buf = io.BytesIO()
    Image.fromarray(_gray(img).astype(np.float32)).save(buf, "TIFF")
    return buf.getvalue()


def with_trailing_bytes(jpeg: bytes, junk: bytes = b"\x00" * 37 + b"\xff\xd9 trailing junk") -> bytes:
    """A JPEG followed by bytes after its end marker (padding from a download tool, or junk that
    even contains another FFD9)."""
    return jpeg + junk
