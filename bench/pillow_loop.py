"""The pipeline benchmark's reference: a plain Pillow q50 loop over the same images as the
request (`make bench-pipeline`, issue 14), single thread, its CPU time measured as the
worker's is (utime + stime of /proc/<pid>/stat, every thread of the process).

    python bench/pillow_loop.py --images N [--json FILE | --merge-into FILE [--before FILE]] PHOTO_DIR|FILE...

With --merge-into, the result goes under "pillow_loop" into FILE, load.rs's result of the
request it is compared with (bench/results/pipeline-originals.json), so that the two figures
of one run stay together. --before names the --json result of the same loop run right before
the request, merged in as "pillow_loop_before": the two loops bracket the request, so that the
machine's drift between minutes shows (bench/pipeline_report.py compares the worker with both).

The images are the request's: tests/src/bin/load.rs serves the files sorted by name and its
URL i is file i mod (number of files), so image i here is the same file. Per image, from its
bytes in memory: `Image.open`, EXIF orientation applied (`ImageOps.exif_transpose`, in place:
what a loop that keeps phone photos upright needs; nothing for upright files), `.convert("RGB")`,
`.save(..., "JPEG", quality=50)`. Each file is read once before the loop, as the worker's
download is not Pillow's work either; the interpreter's start and imports are outside the
measured span. Per file, the CPU time of each image (time.process_time) is summed, so the
figures can be split by subsampling class. The class, size and orientation of each file come
from the corpus's manifest.json (bench/corpus.py) next to the photos, when there is one.
"""

import io
import json
import os
import sys
import time
from pathlib import Path

from PIL import Image, ImageOps

TICKS = os.sysconf("SC_CLK_TCK")


def process_counts() -> tuple[int, int, int]:
    """minflt, utime and stime of this process (clock ticks for the times): the fields load.rs
    reads for the worker processes."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[11]), int(fields[12])


def pillow_q50_upright(data: bytes) -> bytes:
    out = io.BytesIO()
    img = Image.open(io.BytesIO(data))
    ImageOps.exif_transpose(img, in_place=True)
    img.convert("RGB").save(out, "JPEG", quality=50)
    return out.getvalue()


def photo_files(args: list[str]) -> list[Path]:
    """As load.rs: the files given, or every .jpg/.jpeg/.png in the folders given, by name."""
    files = []
    for arg in map(Path, args):
        entries = sorted(arg.iterdir()) if arg.is_dir() else [arg]
        files += [f for f in entries if f.suffix in (".jpg", ".jpeg", ".png")]
    return sorted(files, key=lambda f: f.name)


def manifest_of(files: list[Path]) -> dict:
    described = {}
    for folder in {f.parent for f in files}:
        manifest = folder / "manifest.json"
        if manifest.exists():
            described |= {row["file"]: row for row in json.loads(manifest.read_text())}
    return described


def main(args: list[str]) -> None:
    images, json_path, merge_into, before, rest = 500, None, None, None, []
    it = iter(args)
    for arg in it:
        if arg == "--images":
            images = int(next(it))
        elif arg == "--json":
            json_path = Path(next(it))
        elif arg == "--merge-into":
            merge_into = Path(next(it))
        elif arg == "--before":
            before = json.loads(Path(next(it)).read_text())
        else:
            rest.append(arg)
    files = photo_files(rest)
    if not files:
        sys.exit(f"pillow_loop: no .jpg or .png among {rest}")
    data = {f.name: f.read_bytes() for f in files}
    names = [f.name for f in files]
    described = manifest_of(files)
    per_file = {name: {"images": 0, "cpu_s": 0.0, "output_bytes": 0} for name in names}

    wall, (faults, user, sys_) = time.perf_counter(), process_counts()
    for i in range(images):
        name = names[i % len(names)]
        started = time.process_time()
        out = pillow_q50_upright(data[name])
        row = per_file[name]
        row["cpu_s"] += time.process_time() - started
        row["images"] += 1
        row["output_bytes"] = len(out)
    faults_now, user_now, sys_now = process_counts()
    cpu_s = (user_now - user + sys_now - sys_) / TICKS
    wall = time.perf_counter() - wall

    for name, row in per_file.items():
        with Image.open(io.BytesIO(data[name])) as img:
            row["megapixels"] = img.width * img.height / 1e6
        about = described.get(name, {})
        row |= {key: about.get(key) for key in ("subsampling", "progressive", "icc_bytes", "orientation", "original")}
        row["input_bytes"] = len(data[name])
    megapixels = sum(per_file[names[i % len(names)]]["megapixels"] for i in range(images)) / images
    result = {
        "images": images, "distinct_files": names, "mean_megapixels": megapixels,
        "cpu_seconds": cpu_s, "cpu_ms_per_image": cpu_s * 1000 / images, "wall_seconds": wall,
        "sys_seconds": (sys_now - sys_) / TICKS, "minor_faults": faults_now - faults,
        "how": "Image.open, ImageOps.exif_transpose(in_place=True), convert('RGB'), save JPEG quality=50; "
               "one thread; CPU = utime + stime of /proc/self/stat over the loop",
        "pillow": Image.__version__, "files": per_file,
    }
    print(f"Pillow q50 loop: {images} images (mean {megapixels:.1f} MP), CPU {cpu_s:.2f} s, "
          f"{result['cpu_ms_per_image']:.1f} ms per image, wall {wall:.1f} s", file=sys.stderr)
    if merge_into:
        request = json.loads(merge_into.read_text())
        if request["images"] != images or request["distinct_files"] != names:
            sys.exit(f"pillow_loop: {merge_into} is a request of other images ({request['images']} over "
                     f"{request['distinct_files']})")
        if before and (before["images"] != images or before["distinct_files"] != names):
            sys.exit("pillow_loop: --before is a loop over other images")
        merged = {**request, "pillow_loop": result} | ({"pillow_loop_before": before} if before else {})
        merge_into.write_text(json.dumps(merged, indent=2))
    elif json_path:
        json_path.write_text(json.dumps(result, indent=1))
    else:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
