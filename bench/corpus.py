"""Builds the codec benchmark corpus from photographs shipped inside packages.

    python bench/corpus.py [--smoke | --pipeline | --originals] OUT_DIR

Sources (nothing is downloaded at run time but registry packages):
- scikit-image's wheel (bench/requirements.txt): photos in skimage/data, not the pooch-fetched ones;
- Debian packages, fetched with `apt-get download` (pinned versions below) and unpacked with
  `dpkg-deb -x` into bench/.corpus-src.
Each entry is resized with Pillow's LANCZOS to a target size where given (upscaled where the
source is smaller: the 24 MP files are upscaled from 17-20 MP photos), then saved as baseline
JPEG, progressive JPEG (quality 90-95, 4:2:0, as cameras and catalogue tools save) or PNG.
No EXIF is written, so both codecs see the same upright pixels.

Those re-saved files are all 4:2:0, Pillow's default. Photos as people have them are not
(issue 14), so the corpus also has ORIGINALS: JPEGs copied byte for byte as their packages ship
them (4:2:0, 4:2:2 and 4:4:4, baseline and progressive, some with an ICC profile), and
phone-style files: a real photo with its EXIF orientation set to 6 or 8 by editing the APP1
bytes (`with_orientation`), its image data untouched.

A manifest.json records for every file its source, package, SHA-256, chroma subsampling,
progressive or not, ICC profile size and EXIF orientation. Files already present are kept (the
corpus is a cache).
"""

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import skimage
from PIL import Image, JpegImagePlugin

SRC = Path(__file__).parent / ".corpus-src"
SKIMAGE = Path(skimage.__file__).parent / "data"
DEBS = {
    "mate-backgrounds": "1.26.0-1",
    "lomiri-wallpapers-20.04": "20.04.0-2",
    "lomiri-wallpapers-16.04": "20.04.0-2",
    "ukui-wallpapers": "20.04.3-1.1",
}
MATE = "mate-backgrounds:usr/share/backgrounds/mate"
LOMIRI = "lomiri-wallpapers-20.04:usr/share/backgrounds"
LOMIRI16 = "lomiri-wallpapers-16.04:usr/share/backgrounds"
UKUI = "ukui-wallpapers:usr/share/backgrounds"

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
# Unmodified originals (issue 14): (output name, source, EXIF orientation to set or None to copy
# the file as it is, expected subsampling, progressive, ICC profile). The name says the class;
# `build` checks every file against it, so a package that changes cannot change the corpus
# silently. Phone-style files: orientation 6 (turn right) and 8 (turn left), two of them with
# sizes that are not a multiple of the MCU (1680x1050 at 4:2:2, 1600x1203 at 4:2:0).
ORIGINALS = [
    ("o420-retina-2mp.jpg", "skimage:retina.jpg", None, "4:2:0", False, False),
    ("o420-freshflower-1.9mp-prog.jpg", f"{MATE}/nature/FreshFlower.jpg", None, "4:2:0", True, False),
    ("o420-garden-4mp.jpg", f"{MATE}/nature/Garden.jpg", None, "4:2:0", False, False),
    ("o420-seeding-16mp-prog.jpg", f"{LOMIRI16}/seeding_by_Clements_Engelhardt.jpg", None, "4:2:0", True, False),
    ("o422-dune-1.8mp.jpg", f"{MATE}/nature/Dune.jpg", None, "4:2:2", False, False),
    ("o422-wood-4.9mp.jpg", f"{MATE}/nature/Wood.jpg", None, "4:2:2", False, False),
    ("o422-bridge-11mp-prog.jpg", f"{LOMIRI16}/Bridge_by_Sander_Klootwijk.jpg", None, "4:2:2", True, False),
    ("o422-elephants-18mp-prog.jpg", f"{MATE}/abstract/Elephants_5640x3172.jpg", None, "4:2:2", True, False),
    ("o422-kleiber-20mp.jpg", f"{LOMIRI}/Kleiber_by_Lukas_Baubkus.jpg", None, "4:2:2", False, False),
    ("o444-rocket-0.3mp-icc.jpg", "skimage:rocket.jpg", None, "4:4:4", False, True),
    ("o444-hubble-0.9mp-icc.jpg", "skimage:hubble_deep_field.jpg", None, "4:4:4", False, True),
    ("o444-picture1a-1.5mp-prog.jpg", f"{LOMIRI16}/Picture_1A_by_freespace.jpg", None, "4:4:4", True, False),
    ("o444-string-8.7mp-icc.jpg", f"{UKUI}/string.jpg", None, "4:4:4", False, True),
    ("o444-fossa-9.4mp.jpg", f"{LOMIRI}/Fossa_by_Jasper_Roks.jpg", None, "4:4:4", False, False),
    ("o444-sea-17mp-prog.jpg", f"{LOMIRI}/Infinite-Sea_by_Aury88.jpg", None, "4:4:4", True, False),
    ("o444-painting-24mp-icc.jpg", f"{LOMIRI}/Painting-Colors_by__herobrine7gamer.jpg", None, "4:4:4", False, True),
    ("o420-phone-garden-4mp-o6.jpg", f"{MATE}/nature/Garden.jpg", 6, "4:2:0", False, False),
    ("o420-phone-freshflower-1.9mp-prog-o8.jpg", f"{MATE}/nature/FreshFlower.jpg", 8, "4:2:0", True, False),
    ("o422-phone-wood-4.9mp-o6.jpg", f"{MATE}/nature/Wood.jpg", 6, "4:2:2", False, False),
    ("o422-phone-dune-1.8mp-o8.jpg", f"{MATE}/nature/Dune.jpg", 8, "4:2:2", False, False),
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


def package_of(source: str) -> str:
    origin = source.split(":", 1)[0]
    return f"scikit-image {skimage.__version__}" if origin == "skimage" else f"{origin} {DEBS[origin]} (Debian)"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe(path: Path) -> dict:
    """What the codec's paths depend on, read from the file itself."""
    with Image.open(path) as img:
        if img.format != "JPEG":
            return {"subsampling": None, "progressive": False, "icc_bytes": 0, "orientation": None}
        sampling = "gray" if img.mode == "L" else {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(
            JpegImagePlugin.get_sampling(img), "other")
        return {"subsampling": sampling, "progressive": bool(img.info.get("progressive")),
                "icc_bytes": len(img.info.get("icc_profile") or b""), "orientation": img.getexif().get(0x0112)}


def segments(jpeg: bytes):
    """(offset, marker, length including the marker) of each marker segment before the first scan."""
    pos = 2
    while jpeg[pos] == 0xFF and jpeg[pos + 1] != 0xDA:
        length = 2 + struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
        yield pos, jpeg[pos + 1], length
        pos += length


def minimal_exif(orientation: int) -> bytes:
    """An APP1 segment whose EXIF holds only the orientation (big-endian TIFF, one IFD entry)."""
    tiff = b"MM\0\x2a" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1, orientation, 0, 0)
    payload = b"Exif\0\0" + tiff
    return b"\xFF\xE1" + struct.pack(">H", 2 + len(payload)) + payload


def with_orientation(jpeg: bytes, orientation: int) -> tuple[bytes, str]:
    """`jpeg` with its EXIF orientation set, as a phone writes a portrait shot: the tag's value
    is overwritten where IFD0 has one, otherwise the EXIF segment is replaced by (or, without one,
    a new one is inserted after SOI/APP0 as) one holding only the orientation. Every other byte,
    the image data above all, is the source's. Also says which of the three was done."""
    app0_end = 2
    for pos, marker, length in segments(jpeg):
        if marker == 0xE0 and app0_end == pos:
            app0_end = pos + length
        if marker == 0xE1 and jpeg[pos + 4:pos + 10] == b"Exif\0\0":
            tiff = pos + 10
            endian = {b"II": "<", b"MM": ">"}[jpeg[tiff:tiff + 2]]
            ifd = tiff + struct.unpack(endian + "I", jpeg[tiff + 4:tiff + 8])[0]
            for i in range(struct.unpack(endian + "H", jpeg[ifd:ifd + 2])[0]):
                entry = ifd + 2 + 12 * i
                tag, kind, count = struct.unpack(endian + "HHI", jpeg[entry:entry + 8])
                if tag == 0x0112 and kind == 3 and count == 1:
                    value = struct.pack(endian + "H", orientation)
                    return jpeg[:entry + 8] + value + jpeg[entry + 10:], "orientation tag set in the EXIF"
            return jpeg[:pos] + minimal_exif(orientation) + jpeg[pos + length:], "EXIF replaced by one with the tag"
    return jpeg[:app0_end] + minimal_exif(orientation) + jpeg[app0_end:], "EXIF with the tag inserted"


def first_scan(jpeg: bytes) -> int:
    *_, (pos, _, length) = segments(jpeg)
    return pos + length


def build_original(out_dir: Path, entry) -> dict:
    name, source, orientation, subsampling, progressive, icc = entry
    path = source_path(source)
    out = out_dir / name
    data = path.read_bytes()
    change = "none: the package's file as shipped"
    if orientation:
        data, change = with_orientation(data, orientation)
        # The image data is the source's, byte for byte: only the header changed.
        assert data[first_scan(data):] == path.read_bytes()[first_scan(path.read_bytes()):], name
    if not out.exists():
        out.write_bytes(data)
        print(f"corpus: {name} ({change})", file=sys.stderr)
    found = describe(out)
    expected = {"subsampling": subsampling, "progressive": progressive, "icc": icc,
                "orientation": orientation}
    seen = {**found, "icc": found["icc_bytes"] > 0}
    if orientation is None:
        # Copies keep whatever the package wrote (several write orientation 1).
        seen["orientation"] = None
    if any(seen[k] != v for k, v in expected.items()):
        raise SystemExit(f"corpus: {name} from {source} is {found}, not what the corpus expects: {expected}")
    with Image.open(out) as made:
        size = made.size
    return {"file": name, "source": source, "source_size": size, "size": size,
            "format": "pjpeg" if progressive else "jpeg", "quality": None, "resized": False, "original": True,
            "change": change, "source_sha256": sha256(path), "sha256": sha256(out), **found,
            "package": package_of(source)}


def build(out_dir: Path, entries, originals=()) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = [build_original(out_dir, entry) for entry in originals]
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
            size = made.size
        manifest.append({
            "file": name, "source": source, "source_size": src_size, "size": size,
            "format": fmt, "quality": quality, "resized": bool(target_mp), "original": False,
            "change": "re-saved by Pillow" + (", resized" if target_mp else ""), "source_sha256": sha256(path),
            "sha256": sha256(out), **describe(out), "package": package_of(source),
        })
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    if "--smoke" in sys.argv:
        build(Path(sys.argv[-1]), SMOKE)
    elif "--pipeline" in sys.argv:
        build(Path(sys.argv[-1]), PIPELINE)
    elif "--originals" in sys.argv:
        # Only the unmodified originals: the pipeline benchmark's photos as people have them.
        build(Path(sys.argv[-1]), (), ORIGINALS)
    else:
        build(Path(sys.argv[-1]), CORPUS, ORIGINALS)
