"""Data hygiene: make every stored image a JPEG that every decoder reads the same way.

Raw ImageNet holds CMYK JPEGs, a PNG named ``.JPEG``, grayscale JPEGs, EXIF-rotated photos and,
in downloads that went wrong, truncated files. One undecodable image stops a DALI pipeline, and
EXIF orientation is applied by DALI/nvImageCodec but ignored by PIL (and so by timm, torchvision
and the published ImageNet results). The policy here:

* JPEG in RGB: original bytes, untouched (the common case);
* EXIF orientation != 1: the tag is reset to 1 in place (two bytes; pixels untouched), so every
  decoder shows the stored pixels, as the reference pipelines always have (``exif="apply"``
  rotates the pixels instead and re-encodes);
* CMYK / YCCK, grayscale, palette, alpha, or a non-JPEG format: decoded and re-encoded as a
  baseline RGB JPEG at ``quality``;
* optional ``max_side``: larger images are downscaled (bicubic) and re-encoded;
* anything that cannot be decoded is rejected with the decoder's reason (quarantined).

Every change is reported as a short action string that ends up in the sample's json. Optional
image *flags* (``policy.flags``, switched on by a dataset preset's ``image_flags``) report facts
about the pixels without changing them, e.g. ``all_black`` for ImageNet-Sketch's empty images.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import OptionsError

Image.MAX_IMAGE_PIXELS = None  # ImageNet has a few 10+ MP images; they are photos, not bombs
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

    actions: list[str] = []
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
    # is complete (a JPEG ends with the EOI marker FFD9; truncated downloads do not)
    flags: dict[str, bool] = {}
    if policy.flags:
        flags = _flags(_full_decode(img), policy.flags)  # pixel flags need every pixel, not a draft
    elif policy.check == "decode" or not _has_jpeg_end(data):
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
        rgb = img.convert("RGB")
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


def _has_jpeg_end(data: bytes) -> bool:
    # EOI may be followed by a little padding or trailing junk in real files
    return b"\xff\xd9" in data[-64:]


def _mode_name(mode: str) -> str:
    return {"L": "grayscale", "P": "palette", "RGBA": "rgba", "LA": "grayscale_alpha",
            "CMYK": "cmyk", "1": "bilevel", "I;16": "grayscale16"}.get(mode, mode.lower())


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
