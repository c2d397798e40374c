"""How much of a DSSIM gap between our output and Pillow's is the decoders' rounding (issue 14,
item 2: within 1% per file). `make bench-codec` compares both outputs with the source, each
decoded by Pillow to 8-bit RGB through libjpeg's own YCbCr -> RGB, as a viewer would. Pillow's
output encodes the source's pixels after exactly that rounding, ours the coefficients before
it, so the rounding can favour one side. Here each output is also measured two other ways:

- libjpeg's upsampled YCbCr converted to RGB by Pillow (another 8-bit rounding, `draft`);
- "float": source and outputs decoded by libjpeg to YCbCr, converted to RGB without rounding.

    python bench/dssim_decoders.py OURS_DIR SOURCE...

OURS_DIR holds our outputs as `codec_bench --out OURS_DIR` names them (<source name>.jpg);
upright sources only. Prints, per file, each way's DSSIM (bench/pillow_bench.py's: CIELAB,
mean of 1 - SSIM over L*, a*, b*, halved) for ours and Pillow's, and their ratio.
"""

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import rgb2lab

from pillow_bench import lab_dssim, pillow_q50


def libjpeg_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def ycbcr(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.draft("YCbCr", img.size)  # libjpeg stops before its colour conversion
    if img.mode != "YCbCr":
        raise ValueError("not a YCbCr JPEG")
    return img


def pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(ycbcr(data).convert("RGB"))


def float_rgb(data: bytes) -> np.ndarray:
    """JFIF's YCbCr -> RGB in floats, clipped to the cube, as floats in [0, 1]."""
    y, cb, cr = (np.asarray(c, dtype=np.float64) for c in ycbcr(data).split())
    rgb = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)], 2)
    return np.clip(rgb, 0, 255) / 255


def main(ours_dir: Path, sources: list[Path]) -> None:
    for source in sources:
        data = source.read_bytes()
        outputs = {"ours": (ours_dir / f"{source.name}.jpg").read_bytes(), "pillow": pillow_q50(data)}
        source_8bit = rgb2lab(libjpeg_rgb(data))
        ways = [("libjpeg RGB", source_8bit, libjpeg_rgb), ("Pillow's RGB", source_8bit, pillow_rgb),
                ("float", rgb2lab(float_rgb(data)), float_rgb)]
        for way, source_lab, decode in ways:
            ours, pillow = (lab_dssim(source_lab, rgb2lab(decode(outputs[side]))) for side in ("ours", "pillow"))
            print(f"{source.name:42s} {way:13s} ours {ours:.5f} Pillow {pillow:.5f} ratio {ours / pillow:.4f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
