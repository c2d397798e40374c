"""Pillow side of the codec benchmark, and the quality of both codecs' outputs.

    python bench/pillow_bench.py [--runs N] [--out DIR] [--ours DIR] FILE...   JSON lines on stdout
    python bench/pillow_bench.py --one FILE                                   child: peak RSS (KiB)

Per file, single-threaded, input bytes already in memory: one warm-up, then the median of N runs
of the seed service's code, `Image.open(src).convert("RGB").save(dst, "JPEG", quality=50)`;
output bytes; peak RSS of a fresh interpreter doing it once (VmHWM, Python with Pillow itself
is about 14 MB; not getrusage's ru_maxrss, which keeps the forked parent's peak across exec);
SSIM (luma) and DSSIM (colour) against the source of Pillow's output and of ours (`--ours`, the
codec_bench outputs).

Pillow drops an input's EXIF orientation without turning its pixels, as the seed service did, so
its output of a phone photo is sideways. It is timed as it is (the seed's code), and for the
quality figures it is turned upright by the source's orientation, losslessly after decoding: the
reference is then decode + encode + rotate, what a service that keeps photos upright delivers.
"""

import io
import json
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageOps


def pillow_q50(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=50)
    return out.getvalue()


# EXIF orientation -> the transposition that makes the pixels upright (as ImageOps.exif_transpose).
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def orientation(path: Path) -> int:
    with Image.open(path) as img:
        return img.getexif().get(0x0112, 1)


def upright(img: Image.Image, turn: int = 1) -> Image.Image:
    """`img` with its own EXIF orientation applied, then turned by `turn` (an EXIF orientation:
    the source's, for an output that lost it)."""
    img = ImageOps.exif_transpose(img)
    return img.transpose(UPRIGHT[turn]) if turn in UPRIGHT else img


def luma(img: Image.Image, turn: int = 1):
    import numpy as np

    return np.asarray(upright(img, turn).convert("L"))


def ssim(source: Path, output: Path, turn: int = 1) -> float:
    """SSIM on luma (Y of ITU-R 601, as Pillow converts), 7x7 window, of `output` (turned by
    `turn`, see `upright`) against `source` decoded by Pillow with its EXIF orientation applied."""
    from skimage.metrics import structural_similarity

    with Image.open(source) as src, Image.open(output) as out:
        a, b = luma(src), luma(out, turn)
    if a.shape != b.shape:
        raise ValueError(f"{output}: {b.shape} differs from the source's {a.shape}")
    return float(structural_similarity(a, b, data_range=255))


def dssim(source: Path, output: Path, turn: int = 1) -> float:
    """Colour DSSIM, (1 - SSIM) / 2 with SSIM the mean over CIELAB's L*, a* and b* (D65; 7x7
    window; data range 100 for L*, 255 for a* and b*), of `output` against `source`, both
    decoded by Pillow with their EXIF orientation applied (`output` then turned by `turn`). Unlike
    the luma SSIM it sees what happens to colour. Lower is better."""
    import numpy as np
    from skimage.color import rgb2lab

    with Image.open(source) as src, Image.open(output) as out:
        a, b = (rgb2lab(np.asarray(upright(img, t).convert("RGB"))) for img, t in ((src, 1), (out, turn)))
    return lab_dssim(a, b)


def lab_dssim(source_lab, output_lab) -> float:
    """`dssim` of two images already in CIELAB (arrays of the same shape)."""
    from skimage.metrics import structural_similarity

    ranges = (100.0, 255.0, 255.0)
    ssim = sum(structural_similarity(source_lab[..., c], output_lab[..., c], data_range=ranges[c]) for c in range(3)) / 3
    return (1 - ssim) / 2


def peak_rss_kib(file: Path) -> int:
    out = subprocess.run([sys.executable, __file__, "--one", str(file)], capture_output=True, text=True, check=True)
    return int(out.stdout)


def bench(file: Path, runs: int, out_dir: Path, ours_dir: Path | None) -> dict:
    data = file.read_bytes()
    jpeg = pillow_q50(data)  # warm-up
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        pillow_q50(data)
        seconds.append(time.perf_counter() - started)
    median = sorted(seconds)[len(seconds) // 2]
    output = out_dir / f"{file.name}.jpg"
    output.write_bytes(jpeg)
    with Image.open(file) as img:
        megapixels = img.width * img.height / 1e6
    turn = orientation(file)  # Pillow's output lost it
    row = {
        "file": file.name, "megapixels": megapixels, "input_bytes": len(data), "output_bytes": len(jpeg),
        "runs": runs, "median_s": median, "mp_per_s": megapixels / median,
        "peak_rss_kib": peak_rss_kib(file), "ssim": ssim(file, output, turn), "dssim": dssim(file, output, turn),
    }
    ours = ours_dir / f"{file.name}.jpg" if ours_dir else None
    if ours and ours.exists():
        row["ours_ssim"] = ssim(file, ours)
        row["ours_dssim"] = dssim(file, ours)
    return row


def main(args: list[str]) -> None:
    if args[0] == "--one":
        pillow_q50(Path(args[1]).read_bytes())
        status = Path("/proc/self/status").read_text()
        print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
        return
    runs, out_dir, ours_dir, files = 5, Path("bench/results/out-pillow"), None, []
    it = iter(args)
    for arg in it:
        if arg == "--runs":
            runs = int(next(it))
        elif arg == "--out":
            out_dir = Path(next(it))
        elif arg == "--ours":
            ours_dir = Path(next(it))
        else:
            files.append(Path(arg))
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in files:
        print(json.dumps(bench(file, max(runs, 1), out_dir, ours_dir)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
