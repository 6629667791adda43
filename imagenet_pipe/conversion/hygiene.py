"""Data hygiene: make every stored image a JPEG that every decoder reads the same way.

Raw ImageNet holds CMYK JPEGs, a PNG named ``.JPEG``, grayscale JPEGs, EXIF-rotated photos and,
in downloads that went wrong, truncated files. One undecodable image stops a DALI pipeline, and
EXIF orientation is applied by DALI/nvImageCodec but ignored by PIL (and so by timm, torchvision
and the published ImageNet results). The policy here:

* JPEG in RGB: original bytes, untouched (the common case);
* EXIF orientation != 1: the tag is reset to 1 in place (two bytes; pixels untouched), so every
  decoder shows the stored pixels, as the reference pipelines always have (``exif="apply"``
  rotates the pixels instead and re-encodes);
* bytes after the JPEG's end marker (EOI): trimmed (``trailing_bytes_trimmed:<n>``), so that
  every stored JPEG ends with ``FFD9``;
* CMYK / YCCK, grayscale, palette, alpha, or a non-JPEG format: decoded and re-encoded as a
  baseline RGB JPEG at ``quality``; 16-bit pixels are scaled to 8 bits (not clipped);
* optional ``max_side``: larger images are downscaled (bicubic) and re-encoded;
* rejected (quarantined) with a reason: anything that cannot be decoded, images whose header
  declares more than ``max_pixels`` pixels (decompression bombs: judged from the header, before
  any pixel is decoded, so a worker's memory stays bounded; files larger than
  ``max_file_bytes`` are not even read), and 32-bit integer or floating-point pixels (TIFF modes
  ``I``/``F``), which have no defined 8-bit range.

Every change is reported as a short action string that ends up in the sample's json. Optional
image *flags* (``policy.flags``, switched on by a dataset preset's ``image_flags``) report facts
about the pixels without changing them, e.g. ``all_black`` for ImageNet-Sketch's empty images.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import OptionsError

Image.MAX_IMAGE_PIXELS = None  # the policy's max_pixels decides, from the header, before Pillow allocates
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold; ImageNet's largest photos are far below it
EOI = b"\xff\xd9"
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
NO_8BIT_RANGE = {"I": "32-bit integer", "I;32": "32-bit integer", "F": "floating-point"}
EXIF_ORIENTATION = 0x0112
# a pixel counts as black up to this value (0..255, every channel): JPEG ringing on a black frame
# stays in the low single digits, a faint sketch stroke is far brighter
BLACK_MAX = 10
FLAGS = ("all_black",)


@dataclass(frozen=True)
class HygienePolicy:
    quality: int = 95  # JPEG quality whenever an image has to be re-encoded
    max_side: int | None = None  # downscale images whose longer side exceeds this
    check: str = "decode"  # "decode": fully decode every image; "header": headers + end marker only
    exif: str = "reset"  # "reset" the orientation tag, "apply" it to the pixels, or "keep" it
    flags: tuple[str, ...] = ()  # pixel facts to report per image (see FLAGS); forces a full decode
    max_pixels: int = DEFAULT_MAX_PIXELS  # quarantine images whose header declares more (bombs)

    def __post_init__(self) -> None:
        unknown = [f for f in self.flags if f not in FLAGS]
        if unknown:
            raise OptionsError(f"unknown image flag(s) {unknown}; known: {list(FLAGS)}")
        if self.check not in ("decode", "header"):
            raise OptionsError(f"check must be 'decode' or 'header', not {self.check!r}")
        if self.exif not in ("reset", "apply", "keep"):
            raise OptionsError(f"exif must be 'reset', 'apply' or 'keep', not {self.exif!r}")
        if not 1 <= self.quality <= 100:
            raise OptionsError(f"quality must be in 1..100, not {self.quality}")
        if self.max_pixels < 1:
            raise OptionsError(f"max_pixels must be positive, not {self.max_pixels}")

    @property
    def max_file_bytes(self) -> int:
        """No image within ``max_pixels`` is larger on disk than uncompressed 16-bit RGBA (8 bytes
        per pixel) plus 1 MiB of metadata: larger files are quarantined without being read."""
        return 8 * self.max_pixels + (1 << 20)


class BadImage(Exception):
    """An image that cannot be stored; the message is the quarantine reason."""


@dataclass
class CleanImage:
    data: bytes
    width: int
    height: int
    actions: list[str] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)  # policy.flags -> value; bytes unaffected

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def clean(data: bytes, policy: HygienePolicy = HygienePolicy()) -> CleanImage:
    """Inspect one raw image and return the bytes to store, or raise :class:`BadImage`."""
    if not data:
        raise BadImage("empty file")
    try:
        img = Image.open(io.BytesIO(data))
        fmt, mode, (width, height) = img.format, img.mode, img.size
        orientation = _orientation(img) if fmt == "JPEG" else 1
    except UnidentifiedImageError:
        raise BadImage(f"not an image: unknown format (starts with {data[:8].hex()})") from None
    except Exception as e:  # PIL raises many types on malformed headers
        raise BadImage(f"unreadable image header: {e}") from None
    if width * height > policy.max_pixels:
        raise BadImage(f"decompression bomb: the header declares {width}x{height} = {width * height / 1e6:.0f} M "
                       f"pixels, more than --max-pixels {policy.max_pixels}")
    if mode in NO_8BIT_RANGE:
        raise BadImage(f"{NO_8BIT_RANGE[mode]} pixels (mode {mode}) have no defined 8-bit range")

    actions: list[str] = []
    complete = fmt == "JPEG" and data.endswith(EOI)
    if fmt == "JPEG" and not complete:
        end = jpeg_end(data)
        complete = end is not None
        if complete and end < len(data):
            actions.append(f"trailing_bytes_trimmed:{len(data) - end}")
            data = data[:end]
    reencode = False
    if fmt != "JPEG":
        actions.append(f"{fmt.lower()}_to_jpeg")
        reencode = True
    if mode != "RGB":
        actions.append(f"{_mode_name(mode)}_to_rgb")
        reencode = True
    if policy.max_side and max(width, height) > policy.max_side:
        reencode = True
    if orientation != 1 and policy.exif == "apply":
        reencode = True

    if reencode:
        return _reencode(img, data, policy, actions, orientation)

    # untouched bytes: still prove they decode, unless only headers are checked and the stream
    # is complete (its markers lead to the EOI marker FFD9; truncated downloads do not)
    flags: dict[str, bool] = {}
    if policy.flags:
        flags = _flags(_full_decode(img), policy.flags)  # pixel flags need every pixel, not a draft
    elif policy.check == "decode" or not complete:
        _decode_check(img)
    if orientation != 1 and policy.exif == "reset":
        data = reset_exif_orientation(data)
        actions.append(f"exif_orientation_reset:{orientation}")
    return CleanImage(data, width, height, actions, flags)


def _reencode(img: Image.Image, data: bytes, policy: HygienePolicy, actions: list[str],
              orientation: int) -> CleanImage:
    try:
        img.load()
        if orientation != 1 and policy.exif == "apply":
            img = ImageOps.exif_transpose(img)
            actions.append(f"exif_orientation_applied:{orientation}")
        elif orientation != 1 and policy.exif == "reset":
            actions.append(f"exif_orientation_reset:{orientation}")
        rgb = _to_8bit(img).convert("RGB")
    except Exception as e:
        raise BadImage(f"cannot decode: {e}") from None
    if policy.max_side and max(rgb.size) > policy.max_side:
        scale = policy.max_side / max(rgb.size)
        new = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        actions.append(f"resized:{rgb.width}x{rgb.height}->{new[0]}x{new[1]}")
        rgb = rgb.resize(new, Image.BICUBIC, reducing_gap=3.0)
    buf = io.BytesIO()
    # baseline (non-progressive) so the GPU's hardware JPEG decoder can take it; no EXIF kept
    rgb.save(buf, "JPEG", quality=policy.quality, optimize=False, progressive=False)
    actions.append(f"reencoded:q{policy.quality}")
    return CleanImage(buf.getvalue(), rgb.width, rgb.height, actions, _flags(rgb, policy.flags))


def _flags(img: Image.Image, wanted: tuple[str, ...]) -> dict[str, bool]:
    flags = {}
    if "all_black" in wanted:
        extrema = img.getextrema()  # (min, max) for one band, a tuple of them for several
        bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
        flags["all_black"] = max(hi for _, hi in bands) <= BLACK_MAX
    return flags


def _full_decode(img: Image.Image) -> Image.Image:
    try:
        img.load()
    except Exception as e:
        raise BadImage(f"cannot decode: {e}") from None
    return img


def _decode_check(img: Image.Image) -> None:
    try:
        # scaled (1/8) decoding still entropy-decodes the whole stream, at a fraction of the cost
        img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
        img.load()
    except Exception as e:
        raise BadImage(f"cannot decode: {e}") from None


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit grayscale scaled to 8 bits (v / 257, rounded); Pillow's own conversion clips at 255,
    which turns a 16-bit photo almost entirely white."""
    if img.mode not in SIXTEEN_BIT_MODES:
        return img
    pixels = np.asarray(img).astype(np.uint32)
    return Image.fromarray(((pixels + 128) // 257).astype(np.uint8), "L")


def jpeg_end(data: bytes) -> int | None:
    """Offset just after the EOI marker that ends a JPEG stream, or None when the stream is cut
    before it. Segments are skipped by their length (an EXIF thumbnail's own EOI is inside one) and
    entropy-coded data is scanned to its next real marker (``FF00`` stuffing and ``RSTn`` are
    data), so bytes appended after the image are told apart from the image."""
    pos, n = 2, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return None  # not at a marker: damaged
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xD9:
            return pos + 2
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        elif pos + 4 > n:
            return None
        else:
            pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
            if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
                pos = _scan_end(data, pos)
    return None


def _scan_end(data: bytes, pos: int) -> int:
    while (pos := data.find(b"\xff", pos)) >= 0 and pos + 1 < len(data):
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:
            pos += 1
        else:
            return pos
    return len(data)


def _mode_name(mode: str) -> str:
    if mode in SIXTEEN_BIT_MODES:
        return "grayscale16"
    return {"L": "grayscale", "P": "palette", "RGBA": "rgba", "LA": "grayscale_alpha",
            "CMYK": "cmyk", "1": "bilevel"}.get(mode, mode.lower())


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:
        return 1


def reset_exif_orientation(data: bytes) -> bytes:
    """Set the EXIF Orientation tag of a JPEG to 1 in place (same length, pixels untouched)."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: no more metadata segments
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segment = pos + 4
        if marker == 0xE1 and data[segment : segment + 6] == b"Exif\x00\x00":
            try:
                patched = _patch_tiff_orientation(data, segment + 6)
            except struct.error:
                raise BadImage("malformed EXIF block (orientation tag unreadable)") from None
            if patched is not None:
                return patched
        pos += 2 + length
    raise BadImage("EXIF orientation tag present but not found in an APP1 segment")


def _patch_tiff_orientation(data: bytes, tiff: int) -> bytes | None:
    order = data[tiff : tiff + 2]
    if order not in (b"II", b"MM"):
        return None
    end = "<" if order == b"II" else ">"
    ifd = tiff + struct.unpack(end + "I", data[tiff + 4 : tiff + 8])[0]
    (count,) = struct.unpack(end + "H", data[ifd : ifd + 2])
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, typ = struct.unpack(end + "HH", data[entry : entry + 4])
        if tag == EXIF_ORIENTATION and typ == 3:  # SHORT, value stored inline
            out = bytearray(data)
            out[entry + 8 : entry + 10] = struct.pack(end + "H", 1)
            return bytes(out)
    return None
