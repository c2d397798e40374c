"""The codec under valgrind memcheck on valid, truncated and corrupt JPEGs (issue 14: "valgrind
clean on valid, truncated and corrupt 4:2:2 / 4:4:4 / rotated inputs").

    python bench/valgrind_codec.py [--smoke] [--json FILE] [--doc MD] CODEC_CHECK ORIGINALS_DIR WORK_DIR

Inputs, each in four variants: as it is; truncated half-way through its scan data; truncated
half-way through its headers; corrupt (16 bytes of the scan data flipped, at seeded positions
spread over it, the headers untouched):
- without --smoke, every original of ORIGINALS_DIR (bench/corpus.py --originals: JPEGs as their
  packages ship them, and the phone-style copies with EXIF orientation 6 or 8) that is 4:2:2,
  4:4:4 or EXIF-rotated: 0.3-24 MP, baseline and progressive, with and without ICC profiles;
- always, small files made here for speed (never in place of the originals): a 509x381 crop of
  scikit-image's astronaut (its sizes not a multiple of the MCU) saved by Pillow as 4:2:0, 4:2:2
  and 4:4:4, baseline and progressive, with EXIF orientations 2-8 set on copies of them
  (bench/corpus.py's `with_orientation`: only the APP1 bytes change), and scikit-image's rocket
  (an original 4:4:4 JPEG with an ICC profile).
With --smoke only the small files (scikit-image's wheel only, no apt): the check `make test` runs.

The four variants of a file are one run of CODEC_CHECK (tests/src/bin/codec_check.rs: the codec
once per input, the codec's error is an answer) under `valgrind --tool=memcheck
--error-exitcode=99`, definite leaks counted as errors (valgrind's start is most of the time on
small files); when a run fails, each of its inputs is run again alone, so that the verdict is
per input. Exits 1 when any input has a valgrind error, crashes or fails; valgrind's own report
is in WORK_DIR/<file or input>.valgrind.log.
"""

import io
import json
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

import corpus

VALGRIND = ["valgrind", "--tool=memcheck", "--error-exitcode=99", "--leak-check=full",
            "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite", "--track-origins=yes", "-q"]
FLIPS = 16


def scan_start(jpeg: bytes) -> int:
    """Offset of the first SOS marker (where the headers end)."""
    return corpus.first_scan(jpeg)


def variants(name: str, jpeg: bytes) -> dict[str, bytes]:
    scan = scan_start(jpeg)
    corrupt = bytearray(jpeg)
    rng = random.Random(name)
    # After the SOS header (at most 14 bytes for 3 components), before EOI.
    first, last = scan + 20, len(jpeg) - 3
    step = (last - first) / FLIPS
    for i in range(FLIPS):
        at = int(first + i * step + rng.random() * step)
        corrupt[at] ^= rng.randrange(1, 256)
    return {"valid": jpeg, "truncated-scan": jpeg[:scan + (len(jpeg) - scan) // 2],
            "truncated-headers": jpeg[:scan // 2], "corrupt": bytes(corrupt)}


def small_files(work: Path) -> list[tuple[Path, str]]:
    """(file, what it is) of the small inputs, made in WORK/small."""
    out = work / "small"
    out.mkdir(parents=True, exist_ok=True)
    with Image.open(corpus.SKIMAGE / "astronaut.png") as src:
        img = src.convert("RGB").crop((1, 2, 510, 383))
    made = []
    for sampling, label in ((2, "4:2:0"), (1, "4:2:2"), (0, "4:4:4")):
        for progressive in (False, True):
            name = f"s{label.replace(':', '')}-astronaut{'-prog' if progressive else ''}.jpg"
            path = out / name
            img.save(path, "JPEG", quality=90, subsampling=sampling, progressive=progressive)
            made.append((path, f"{label}{' progressive' if progressive else ''}, Pillow-made 509x381"))
    # EXIF orientations 2-8 on copies of the baseline ones (only the APP1 segment changes).
    for orientation, label in ((2, "4:2:2"), (3, "4:2:0"), (4, "4:4:4"), (5, "4:2:2"), (6, "4:2:0"),
                               (7, "4:4:4"), (8, "4:2:2")):
        source = out / f"s{label.replace(':', '')}-astronaut.jpg"
        data, _ = corpus.with_orientation(source.read_bytes(), orientation)
        path = out / f"s{label.replace(':', '')}-astronaut-o{orientation}.jpg"
        path.write_bytes(data)
        made.append((path, f"{label}, EXIF orientation {orientation}, Pillow-made 509x381"))
    # Sides of whole blocks but not whole MCUs (504 = 31.5 x 16): the turns that mirror them
    # shift the chroma by half a block (4:2:0, 4:2:2) or pair it one block earlier (4:4:4).
    half_mcu = img.crop((0, 0, 504, 376))
    for orientation, sampling, label in ((3, 2, "4:2:0"), (6, 0, "4:4:4"), (8, 1, "4:2:2")):
        buffer = io.BytesIO()
        half_mcu.save(buffer, "JPEG", quality=90, subsampling=sampling)
        data, _ = corpus.with_orientation(buffer.getvalue(), orientation)
        path = out / f"s{label.replace(':', '')}-astronaut-504x376-o{orientation}.jpg"
        path.write_bytes(data)
        made.append((path, f"{label}, EXIF orientation {orientation}, Pillow-made 504x376 (half an MCU over)"))
    rocket = next(e for e in corpus.ORIGINALS if e[0].startswith("o444-rocket"))
    row = corpus.build_original(out, rocket)
    made.append((out / row["file"], "4:4:4 ICC, original (scikit-image)"))
    return made


def original_files(originals: Path) -> list[tuple[Path, str]]:
    manifest = json.loads((originals / "manifest.json").read_text())
    picked = []
    for row in manifest:
        rotated = (row["orientation"] or 1) != 1
        if row.get("original") and (row["subsampling"] in ("4:2:2", "4:4:4") or rotated):
            mp = row["size"][0] * row["size"][1] / 1e6
            what = [row["subsampling"], f"{mp:.1f} MP", "progressive" if row["progressive"] else "baseline"]
            what += ["ICC"] * bool(row["icc_bytes"]) + [f"EXIF orientation {row['orientation']}"] * rotated
            picked.append((originals / row["file"], ", ".join(what) + ", original"))
    wanted = {e[0] for e in corpus.ORIGINALS if e[3] in ("4:2:2", "4:4:4") or e[2]}
    missing = wanted - {p.name for p, _ in picked}
    if missing:
        sys.exit(f"valgrind_codec: originals missing from {originals}: {sorted(missing)}")
    return picked


def run(codec_check: str, paths: list[Path], log: Path) -> dict:
    """One valgrind run over `paths`: its exit status, seconds, and the codec's answer per path."""
    started = time.monotonic()
    done = subprocess.run([*VALGRIND, f"--log-file={log}", codec_check, *map(str, paths)],
                          capture_output=True, text=True)
    answers = dict(line.rsplit(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    return {"exit": done.returncode, "answers": {p.name: answers.get(str(p), "") for p in paths},
            "seconds": round(time.monotonic() - started, 1), "stderr": done.stderr.strip()[-2000:], "log": str(log)}


def section(result: dict) -> list[str]:
    rows, bad = result["runs"], [r for r in result["runs"] if r["exit"] != 0]
    out = [f"Generated {result['date']} by bench/valgrind_codec.py: {result['valgrind']}, `{result['program']}` "
           f"built from {result.get('commit', 'an unrecorded commit')} "
           f"({len(rows)} inputs, {result['seconds']:.0f} s). **{len(rows) - len(bad)} of {len(rows)} clean**"
           + (f"; failed: {', '.join(r['input'] for r in bad)}" if bad else "") + ".", "",
           "| input | what | valid | truncated in the scan | truncated in the headers | corrupt scan |",
           "|---|---|---|---|---|---|"]
    by_file = {}
    for r in rows:
        by_file.setdefault((r["file"], r["what"]), {})[r["variant"]] = r
    for (file, what), runs in by_file.items():
        cells = []
        for variant in ("valid", "truncated-scan", "truncated-headers", "corrupt"):
            r = runs.get(variant)
            if r is None:
                cells.append("")
                continue
            verdict = "clean" if r["exit"] == 0 else f"**valgrind exit {r['exit']}**"
            cells.append(f"{verdict}: {r['answer'] or 'no answer'}")
        out.append(f"| {file} | {what} | " + " | ".join(cells) + " |")
    return out


def main(args: list[str]) -> None:
    smoke = "--smoke" in args
    json_path = Path(args.pop(args.index("--json") + 1)) if "--json" in args else None
    doc = Path(args.pop(args.index("--doc") + 1)) if "--doc" in args else None
    codec_check, originals, work = (a for a in args if a not in ("--smoke", "--json", "--doc"))
    work = Path(work)
    if not shutil.which("valgrind"):
        sys.exit("valgrind_codec: valgrind is not installed (Debian: apt-get install valgrind)")
    files = small_files(work) + ([] if smoke else original_files(Path(originals)))
    # The small set's rocket is also an original: once is enough.
    files = list({path.name: (path, what) for path, what in files}.values())
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    started, runs = time.monotonic(), []
    for path, what in files:
        made = {}
        for variant, data in variants(path.name, path.read_bytes()).items():
            made[variant] = inputs / f"{path.stem}.{variant}.jpg"
            made[variant].write_bytes(data)
        batch = run(codec_check, list(made.values()), work / f"{path.name}.valgrind.log")
        for variant, input_path in made.items():
            r = batch if batch["exit"] == 0 else run(codec_check, [input_path], work / f"{input_path.name}.valgrind.log")
            answer = r["answers"][input_path.name]
            runs.append({"file": path.name, "what": what, "variant": variant, "input": input_path.name,
                         "answer": answer, "exit": r["exit"], "seconds": r["seconds"], "stderr": r["stderr"]})
            verdict = "clean" if r["exit"] == 0 else f"FAILED (exit {r['exit']}, see {r['log']})"
            print(f"{input_path.name}: {answer or 'no answer'}: {verdict}", flush=True)
        print(f"  {path.name}: {len(made)} inputs, {batch['seconds']} s under valgrind", flush=True)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    result = {"date": f"{datetime.now(timezone.utc):%Y-%m-%d}", "valgrind": version, "commit": commit,
              "program": f"{Path(codec_check).parent.name} codec_check", "options": " ".join(VALGRIND),
              "smoke": smoke, "seconds": time.monotonic() - started, "runs": runs}
    failed = [r for r in runs if r["exit"] != 0]
    print(f"valgrind: {len(runs) - len(failed)} of {len(runs)} inputs clean in {result['seconds']:.0f} s")
    if json_path:
        json_path.write_text(json.dumps(result, indent=1))
    if doc:
        from report import replace_block

        doc.write_text(replace_block(doc.read_text(), "codec-valgrind", section(result)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
