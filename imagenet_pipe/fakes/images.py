"""Photo-like JPEGs and the real-world quirks of ImageNet files, for fake raw downloads.

Natural photos have a roughly 1/f amplitude spectrum; pink noise with that spectrum, under a
sky-to-ground gradient and a few soft-edged "subjects", compresses like a photo. At the default
dimensions and quality the bytes per image land near ImageNet's (mean about 110 KiB at about
400x350; see ``tools/make_fake_imagenet.py --stats``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# ImageNet's most common shapes (width, height): 500x375 dominates, portrait and 500x333 follow.
IMAGENET_SHAPES = ((500, 375), (375, 500), (500, 333), (500, 400), (333, 500), (400, 300),
                   (500, 281), (350, 350), (640, 480), (300, 225))
SMALL_SHAPES = ((96, 72), (72, 96), (120, 80), (64, 64), (160, 120))


def _pink(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / f**beta
    x = np.fft.irfft2(spec, s=(h, w))
    return ((x - x.mean()) / (x.std() + 1e-9)).astype(np.float32)


def synth_photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like RGB image: textured gradient background plus 1-4 textured subjects."""
    h, w = height, width
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(20, 200, 3)
    fine, coarse = _pink(rng, h, w, 0.9), _pink(rng, h, w, 1.5)
    x = top * (1 - t) + bottom * t
    x = x + fine[..., None] * rng.uniform(22, 40) + coarse[..., None] * rng.uniform(0, 25, 3)
    img = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    for _ in range(int(rng.integers(1, 5))):
        ow, oh = int(w * rng.uniform(0.15, 0.6)), int(h * rng.uniform(0.15, 0.6))
        ox, oy = int(rng.uniform(-0.1, 0.9) * w), int(rng.uniform(-0.1, 0.9) * h)
        mask = Image.new("L", (w, h))
        draw = ImageDraw.Draw(mask)
        (draw.ellipse if rng.random() < 0.6 else draw.rectangle)([ox, oy, ox + ow, oy + oh], fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3.0))))
        # reuse the fine texture, shifted, instead of another FFT per subject
        texture = np.roll(fine, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
        subject = rng.uniform(0, 255, 3) + texture[..., None] * rng.uniform(15, 45)
        img = Image.composite(Image.fromarray(np.clip(subject, 0, 255).astype(np.uint8)), img, mask)
    return img


def jpeg_bytes(img: Image.Image, quality: int = 93, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# --- the quirks found in the real downloads (docs/raw-layouts.md section 2) ---------------------

def cmyk_jpeg(img: Image.Image) -> bytes:
    """A 4-channel Adobe CMYK JPEG, like the 22 train files and ILSVRC2012_val_00019877."""
    return jpeg_bytes(img.convert("CMYK"), quality=90)


def png_rgba(img: Image.Image) -> bytes:
    """PNG data (RGBA) that will be saved under a ``.JPEG`` name, like n02105855_2933.JPEG."""
    rgba = img.convert("RGBA")
    rgba.putalpha(200)
    return png_bytes(rgba)


def grayscale_jpeg(img: Image.Image) -> bytes:
    """A 1-channel (mode L) JPEG."""
    return jpeg_bytes(img.convert("L"), quality=90)


def exif_rotated_jpeg(img: Image.Image, orientation: int = 6) -> bytes:
    """A JPEG whose pixels are stored rotated, with an EXIF Orientation tag saying how to show it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(img.transpose(Image.Transpose.ROTATE_90), quality=92, exif=exif.tobytes())


def truncated_jpeg(img: Image.Image) -> bytes:
    """A JPEG cut off part-way through its entropy-coded data (an interrupted download)."""
    data = jpeg_bytes(img)
    return data[: len(data) * 3 // 5]


def progressive_jpeg(img: Image.Image) -> bytes:
    return jpeg_bytes(img, progressive=True)


QUIRKS = {
    "cmyk": cmyk_jpeg,
    "png": png_rgba,
    "grayscale": grayscale_jpeg,
    "exif_rotated": exif_rotated_jpeg,
    "truncated": truncated_jpeg,
    "progressive": progressive_jpeg,
}


class ImageFactory:
    """Deterministic stream of fake image bytes.

    ``style="photo"`` draws synthetic photos at ImageNet-like sizes; ``"small"`` draws tiny ones
    for fast tests; ``"real"`` crops real photographs shipped in scikit-image / scikit-learn
    (test extras) so that a pretrained model sees real content; ``"objects"`` crops only the
    photos whose subject is an ImageNet class (``OBJECT_PHOTOS``), keeping most of each side so the
    subject stays in view, and records that class in ``last_wnid`` for the writer to label with.
    """

    def __init__(self, seed: int = 0, style: str = "photo", quality: int = 93) -> None:
        if style not in STYLES:
            raise ValueError(f"unknown image style {style!r}; choose from {STYLES}")
        self.rng = np.random.default_rng(seed)
        self.style = style
        self.quality = quality
        self._real = _real_photos(objects_only=style == "objects") if style in ("real", "objects") else None
        self.last_wnid: str | None = None  # "objects": the ImageNet class of the last image drawn

    def image(self) -> Image.Image:
        if self._real is not None:
            name, photo = self._real[int(self.rng.integers(len(self._real)))]
            self.last_wnid = OBJECT_PHOTOS.get(name)
            return _real_crop(self.rng, photo, low=0.6 if self.style == "objects" else 0.3)
        shapes = SMALL_SHAPES if self.style == "small" else IMAGENET_SHAPES
        w, h = shapes[int(self.rng.integers(len(shapes)))]
        return synth_photo(self.rng, w, h)

    def jpeg(self) -> bytes:
        return jpeg_bytes(self.image(), self.quality)

    def quirk(self, kind: str) -> bytes:
        return QUIRKS[kind](self.image())


STYLES = ("photo", "small", "real", "objects")

# real photos whose subject is an ImageNet-1K class (file name -> wnid)
OBJECT_PHOTOS = {
    "coffee.png": "n07920052",  # espresso
    "chelsea.png": "n02123045",  # tabby cat
    "motorcycle_left.png": "n03785016",  # moped
    "motorcycle_right.png": "n03785016",
    "camera.png": "n04485082",  # tripod
    "rocket.jpg": "n03773504",  # missile
    "china.jpg": "n03877845",  # palace
    "flower.jpg": "n11939491",  # daisy
}


def real_photo_paths() -> list[Path]:
    """Colour photographs shipped inside scikit-image and scikit-learn (empty if not installed)."""
    paths: list[Path] = []
    try:
        import skimage

        root = Path(skimage.__file__).parent / "data"
        paths += [root / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                                     "motorcycle_left.png", "motorcycle_right.png", "camera.png",
                                     "horse.png", "hubble_deep_field.jpg", "retina.jpg",
                                     "brick.png", "gravel.png", "grass.png", "moon.png", "coins.png",
                                     "page.png", "text.png", "cell.png", "color.png", "logo.png",
                                     "clock_motion.png", "phantom.png", "ihc.png")]
    except ImportError:
        pass
    try:
        import sklearn

        root = Path(sklearn.__file__).parent / "datasets" / "images"
        paths += [root / "china.jpg", root / "flower.jpg"]
    except ImportError:
        pass
    return [p for p in paths if p.exists()]


def _real_photos(objects_only: bool = False) -> list[tuple[str, Image.Image]]:
    paths = [p for p in real_photo_paths() if not objects_only or p.name in OBJECT_PHOTOS]
    if not paths:
        raise RuntimeError("real photos need scikit-image or scikit-learn (pip install -e '.[test]')")
    return [(p.name, Image.open(p).convert("RGB")) for p in paths]


def _real_crop(rng: np.random.Generator, photo: Image.Image, low: float = 0.3) -> Image.Image:
    """A random crop (``low``-100% of each side), optionally mirrored, scaled to an ImageNet size."""
    w, h = photo.size
    cw, ch = int(w * rng.uniform(low, 1.0)), int(h * rng.uniform(low, 1.0))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = photo.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = rng.uniform(250, 500) / max(cw, ch)
    return crop.resize((max(16, round(cw * scale)), max(16, round(ch * scale))), Image.BICUBIC)


def iter_photos(seed: int, count: int, style: str = "photo") -> Iterator[bytes]:
    factory = ImageFactory(seed, style)
    for _ in range(count):
        yield factory.jpeg()
