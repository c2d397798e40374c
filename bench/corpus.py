"""Builds the codec benchmark corpus from photographs shipped inside packages.

    python bench/corpus.py [--smoke | --pipeline] OUT_DIR

Sources (nothing is downloaded at run time but registry packages):
- scikit-image's wheel (bench/requirements.txt): photos in skimage/data, not the pooch-fetched ones;
- Debian packages, fetched with `apt-get download` (pinned versions below) and unpacked with
  `dpkg-deb -x` into bench/.corpus-src.
Each entry is resized with Pillow's LANCZOS to a target size where given (upscaled where the
source is smaller: the 24 MP files are upscaled from 17-20 MP photos), then saved as baseline
JPEG, progressive JPEG (quality 90-95, 4:2:0, as cameras and catalogue tools save) or PNG.
No EXIF is written, so both codecs see the same upright pixels. A manifest.json records where
every file came from. Files already present are kept (the corpus is a cache).
"""

import json
import subprocess
import sys
from pathlib import Path

import skimage
from PIL import Image

SRC = Path(__file__).parent / ".corpus-src"
SKIMAGE = Path(skimage.__file__).parent / "data"
DEBS = {
    "mate-backgrounds": "1.26.0-1",
    "lomiri-wallpapers-20.04": "20.04.0-2",
}
MATE = "mate-backgrounds:usr/share/backgrounds/mate"
LOMIRI = "lomiri-wallpapers-20.04:usr/share/backgrounds"

# (output name, source, target megapixels or None to keep, format, JPEG quality)
CORPUS = [
    ("astronaut-0.3mp.jpg", "skimage:astronaut.png", 0.3, "jpeg", 92),
    ("chelsea-0.3mp-prog.jpg", "skimage:chelsea.png", 0.3, "pjpeg", 95),
    ("motorcycle-1mp-prog.jpg", "skimage:motorcycle_left.png", 1.0, "pjpeg", 95),
    ("dune-1.8mp.jpg", f"{MATE}/nature/Dune.jpg", None, "jpeg", 90),
    ("garden-4mp.jpg", f"{MATE}/nature/Garden.jpg", None, "jpeg", 92),
    ("ladybird-4mp-prog.jpg", f"{MATE}/nature/LadyBird.jpg", None, "pjpeg", 95),
    ("sea-17mp.jpg", f"{LOMIRI}/Infinite-Sea_by_Aury88.jpg", None, "jpeg", 90),
    ("elephants-18mp-prog.jpg", f"{MATE}/abstract/Elephants_5640x3172.jpg", None, "pjpeg", 95),
    ("kleiber-24mp.jpg", f"{LOMIRI}/Kleiber_by_Lukas_Baubkus.jpg", 24.0, "jpeg", 92),
    ("rocket-0.3mp.png", "skimage:rocket.jpg", 0.3, "png", None),
    ("coffee-0.5mp.png", "skimage:coffee.png", 0.5, "png", None),
    ("storm-2.5mp.png", f"{MATE}/nature/Storm.jpg", None, "png", None),
    ("twowings-4mp.png", f"{MATE}/nature/TwoWings.jpg", None, "png", None),
    ("elephants-8mp.png", f"{MATE}/abstract/Elephants_3840x2160.jpg", None, "png", None),
    ("kleiber-12mp.png", f"{LOMIRI}/Kleiber_by_Lukas_Baubkus.jpg", 12.0, "png", None),
    ("sea-24mp.png", f"{LOMIRI}/Infinite-Sea_by_Aury88.jpg", 24.0, "png", None),
]
# Small, from the wheel only (no apt): for `make bench-smoke`.
SMOKE = [CORPUS[0], CORPUS[1], CORPUS[10]]

# The pipeline benchmark's catalogue photos (`make bench-pipeline`): 16 photos, 1-3 MP (never
# upscaled: GreenMeadow stays 1.3 MP), mostly baseline JPEG at quality 90 as shops upload them,
# with two progressive JPEGs and two PNGs.
_NATURE = ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
           "TwoWings", "Wood", "YellowFlower"]
_PIPELINE_SOURCES = [f"{MATE}/nature/{name}.jpg" for name in _NATURE] + [
    f"{LOMIRI}/{name}.jpg" for name in ("Fossa_by_Jasper_Roks", "Infinite-Sea_by_Aury88", "Kleiber_by_Lukas_Baubkus",
                                        "Painting-Colors_by__herobrine7gamer")]
_PIPELINE_SIZES = [1.0, 1.5, 2.0, 2.5, 3.0]
_PIPELINE_FORMATS = ["jpeg"] * 6 + ["pjpeg"] + ["jpeg"] * 4 + ["png"] + ["jpeg"] * 2 + ["pjpeg", "png"]
PIPELINE = [
    (f"p{i:02}-{source.rsplit('/', 1)[1].split('_')[0].split('.')[0].lower()}.{'png' if fmt == 'png' else 'jpg'}",
     source, _PIPELINE_SIZES[i % len(_PIPELINE_SIZES)], fmt, None if fmt == "png" else 90, "down")
    for i, (source, fmt) in enumerate(zip(_PIPELINE_SOURCES, _PIPELINE_FORMATS))
]


def fetch_deb(package: str) -> Path:
    """Unpacks the pinned Debian package into .corpus-src/<package> once."""
    root = SRC / package
    if root.exists():
        return root
    SRC.mkdir(parents=True, exist_ok=True)
    spec = f"{package}={DEBS[package]}"
    if subprocess.run(["apt-get", "download", "-q", spec], cwd=SRC).returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "download", "-q", spec], cwd=SRC, check=True)
    deb = next(SRC.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    deb.unlink()
    return root


def source_path(source: str) -> Path:
    origin, path = source.split(":", 1)
    return SKIMAGE / path if origin == "skimage" else fetch_deb(origin) / path


def build(out_dir: Path, entries) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = []
    for name, source, target_mp, fmt, quality, *only in entries:
        path = source_path(source)
        with Image.open(path) as src:
            src_size = src.size
            out = out_dir / name
            if only == ["down"] and target_mp and target_mp * 1e6 >= src.width * src.height:
                target_mp = None  # never upscaled
            if not out.exists():
                img = src.convert("RGB")
                if target_mp:
                    scale = (target_mp * 1e6 / (img.width * img.height)) ** 0.5
                    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
                if fmt == "png":
                    img.save(out, "PNG")
                else:
                    img.save(out, "JPEG", quality=quality, progressive=fmt == "pjpeg")
                print(f"corpus: {name} {img.width}x{img.height}", file=sys.stderr)
        with Image.open(out) as made:
            manifest.append({
                "file": name, "source": source, "source_size": src_size, "size": made.size,
                "format": fmt, "quality": quality, "resized": bool(target_mp),
                "package": "scikit-image " + skimage.__version__ if source.startswith("skimage")
                else f"{source.split(':')[0]} {DEBS[source.split(':')[0]]} (Debian)",
            })
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    build(Path(sys.argv[-1]), SMOKE if "--smoke" in sys.argv else PIPELINE if "--pipeline" in sys.argv else CORPUS)
