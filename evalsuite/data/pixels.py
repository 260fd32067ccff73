"""Image pixels for the encoder: decoded, resized and cropped to uint8 in the loader workers; converted to float
and normalised on the model's device (``ModelAdapter.encode_image``).

Keeping the loader's output uint8 makes batches 4x smaller to move and pin, lets one pixel cache serve every
model with the same size and resize (mean/std are applied later), and allows the cheaper decoders:

- ``pil``: open_clip's own transform (PIL decode, PIL resize and crop) stopped before ``ToTensor``. Followed by
  the on-device normalisation it is bit-identical to ``open_clip.image_transform`` (tested).
- ``tensor``: JPEG files and bytes decoded by ``torchvision.io.decode_jpeg`` (libjpeg-turbo; pixel-identical to
  PIL's decode on the 1000 ImageNet sample JPEGs) and resized by torchvision's uint8 antialiased resize. Against
  ``pil`` the resized pixels differ by at most 2 of 255 levels, 0.004 levels on average (measured on the ImageNet
  sample, ``benchmarks/decode_speed.py``) at 2.7x less CPU per image (9.1 vs 3.4 ms on 500x375 JPEGs). Other
  formats are decoded by PIL (PNG 16-bit, BMP, animated GIF/WebP behave differently in torchvision) and resized
  the same way.
- ``cuda``: JPEG bytes are read (or handed over) in the workers and decoded in batches by nvJPEG on the GPU, then
  resized there.
  nvJPEG's IDCT is not libjpeg's, so this path is opt-in until measured against ``pil`` on a GPU
  (``benchmarks/decode_speed.py`` prints the comparison when CUDA is present).

torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec, which is not installable on the
pinned stack (torch 2.14.1); they are still present and tested here. Revisit when the pin moves.

What a source hands over is an image item (``data.base.ImageItem``): a file path, encoded bytes (a tar member,
a video frame's JPEG) or a PIL image; ``UInt8Pixels.from_item`` is the one dispatch. Bytes take the same path as
the file holding them (``decode_jpeg`` straight from memory, no temporary file), so every source keeps the fast
decoders; a PIL image can only be resized.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image

from ..errors import UserInputError
from .base import ImageItem, check_image_item, load_image_file, open_image_bytes

DECODERS = ("pil", "tensor", "cuda")
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class PixelSpec:
    """Everything the uint8 pixels depend on (not mean/std: those are applied on the device)."""

    size: int
    resize_mode: str  # shortest (resize the short side, centre crop) | squash (resize to size x size)
    interpolation: str  # bicubic | bilinear | nearest
    decoder: str = "pil"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_preprocess(cls, preprocess: dict, resize_mode: Optional[str] = None, decoder: str = "pil") -> "PixelSpec":
        """The spec of a model's preprocessing description (size, resize_mode, interpolation); ``resize_mode``
        overrides its resize (``--transform``)."""
        size = preprocess["size"]
        if isinstance(size, (list, tuple)):
            if len(set(size)) != 1:
                raise UserInputError(f"non-square input size {size} is not supported")
            size = size[0]
        return cls(int(size), resize_mode or preprocess["resize_mode"], preprocess["interpolation"], decoder)


@dataclass(frozen=True)
class JpegBytes:
    """A JPEG file's bytes, decoded later on the device (``decoder: cuda``)."""

    data: torch.Tensor  # 1-D uint8


def is_jpeg(data: Union[bytes, bytearray, memoryview, torch.Tensor]) -> bool:
    head = bytes(data[:3].tolist()) if isinstance(data, torch.Tensor) else bytes(data[:3])
    return head == _JPEG_MAGIC


class UInt8Pixels:
    """Image item (file path, encoded bytes or PIL image) -> (3, size, size) uint8 tensor, resized and cropped as
    the model card says."""

    def __init__(self, spec: PixelSpec) -> None:
        if spec.decoder not in DECODERS:
            raise ValueError(f"decoder {spec.decoder!r}: expected one of {DECODERS}")
        self.spec = spec

    # built on first use, not in __init__: a re-run served by the feature cache makes transforms but decodes
    # nothing, and should not import torchvision and open_clip (seconds) to do so. ``ready`` builds them before a
    # loader starts, so a bad setting is one error, not a per-sample failure in every worker
    def ready(self) -> "UInt8Pixels":
        """Build the resize steps now (raises on a bad interpolation or an open_clip transform of a new shape)."""
        _ = self._mode, self._pil_steps
        return self

    @cached_property
    def _mode(self):
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.spec.interpolation)

    @cached_property
    def _pil_steps(self):
        return _open_clip_pil_steps(self.spec) if self.spec.decoder == "pil" else None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self._pil_steps is not None:
            return pil_to_uint8(self._pil_steps(image))
        return self.resize_crop(pil_to_uint8(image.convert("RGB")))

    def from_item(self, item: ImageItem) -> Union[torch.Tensor, JpegBytes]:
        """The one dispatch over image items (``SampleDataset`` calls it): a path -> ``from_file``, bytes ->
        ``from_bytes``, a PIL image -> ``self(image)``; anything else raises ImageItemError."""
        if isinstance(item, Image.Image):
            return self(item)
        if isinstance(item, (str, os.PathLike)):
            return self.from_file(item)
        if isinstance(item, (bytes, bytearray, memoryview)):
            return self.from_bytes(item)
        check_image_item(item)  # raises, naming the type
        raise AssertionError("unreachable")

    def from_file(self, path: Union[str, os.PathLike]) -> Union[torch.Tensor, JpegBytes]:
        from torchvision.io import read_file

        if self.spec.decoder == "pil":
            return self(load_image_file(path))
        data = read_file(str(path))
        if not is_jpeg(data):
            return self(load_image_file(path))
        check_pixel_limit(path)
        return self._jpeg(data)

    def from_bytes(self, data: Union[bytes, bytearray, memoryview]) -> Union[torch.Tensor, JpegBytes]:
        """Encoded image bytes -> the pixels ``from_file`` gives for a file holding them (bit for bit)."""
        if self.spec.decoder == "pil" or not is_jpeg(data):
            return self(open_image_bytes(data))
        check_pixel_limit(io.BytesIO(data))
        return self._jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))

    def _jpeg(self, data: torch.Tensor) -> Union[torch.Tensor, JpegBytes]:
        """A JPEG's bytes (1-D uint8): decoded here (``tensor``) or left for the device (``cuda``)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        if self.spec.decoder == "cuda":
            return JpegBytes(data)
        return self.resize_crop(decode_jpeg(data, mode=ImageReadMode.RGB))

    def resize_crop(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) on any device -> uint8 (3, size, size); antialiased like PIL's resize."""
        from torchvision.transforms.v2 import functional as TF

        size = self.spec.size
        if self.spec.resize_mode == "squash":
            return TF.resize(pixels, [size, size], interpolation=self._mode, antialias=True)
        resized = TF.resize(pixels, size, interpolation=self._mode, antialias=True)
        return TF.center_crop(resized, [size, size])

    def finish(self, pixels: list, device: torch.device) -> torch.Tensor:
        """A batch whose JPEGs were left undecoded (``decoder: cuda``) -> (B, 3, size, size) uint8 on device."""
        from torchvision.io import ImageReadMode, decode_jpeg

        pending = [i for i, p in enumerate(pixels) if isinstance(p, JpegBytes)]
        out: list[Any] = [None if isinstance(p, JpegBytes) else p.to(device, non_blocking=True) for p in pixels]
        if pending:
            decoded = decode_jpeg([pixels[i].data for i in pending], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(pending, decoded):
                out[i] = self.resize_crop(image)
        return torch.stack(out)


@lru_cache(maxsize=1)
def pixel_libraries() -> dict[str, str]:
    """Versions of what turns files into pixels (Pillow's decoder and resize, torchvision's decode_jpeg and
    resize, open_clip's eval transform). Every cache key over pixels or image features holds them, so an upgrade
    that moves a pixel decodes again instead of serving pixels the current code would not make."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "none"

    return {name: installed(name) for name in ("pillow", "torchvision", "open_clip_torch")}


def check_pixel_limit(path) -> None:
    """PIL's decompression-bomb limit (DecompressionBombError above 2 x Image.MAX_IMAGE_PIXELS) for decoders that
    do not go through PIL: reading the header is enough (one 30000x30000 JPEG of 10 MB would decode to 2.7 GB).
    ``path``: a file's path or a file object (bytes in memory)."""
    with Image.open(path):
        pass


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def _open_clip_pil_steps(spec: PixelSpec):
    """open_clip's eval transform up to (not including) ToTensor and Normalize: resize, crop, RGB conversion."""
    import open_clip
    from torchvision.transforms import Compose

    full = open_clip.image_transform(spec.size, is_train=False, resize_mode=spec.resize_mode,
                                     interpolation=spec.interpolation)
    steps = full.transforms
    names = [type(t).__name__ for t in steps[-2:]]
    if names != ["MaybeToTensor", "Normalize"] and names != ["ToTensor", "Normalize"]:
        raise RuntimeError(f"open_clip's eval transform changed shape (ends with {names}); update data/pixels.py")
    return Compose(steps[:-2])


def normalize_on_device(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32, the same operations as ToTensor + Normalize (bit-identical on CPU).

    On a CPU one image at a time: its four passes then run in cache instead of streaming the whole float batch
    through memory four times (64 images at 224 px: about 17 instead of 25 ms, next to a small ViT's 160 ms)."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=pixels.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=pixels.device).view(-1, 1, 1)
    if pixels.device.type != "cpu":
        return pixels.to(torch.float32).div_(255).sub_(m).div_(s)
    out = torch.empty(pixels.shape, dtype=torch.float32)
    for image, target in zip(pixels, out):
        target.copy_(image).div_(255).sub_(m).div_(s)
    return out
