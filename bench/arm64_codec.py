#!/usr/bin/env python3
"""The codec as Lambda runs it, against the host's: the arm64 release build of codec_bench
(cargo-lambda's zig toolchain; libjpeg-turbo with its NEON code; requantize.c's portable C
where x86_64 uses SSE2) runs under qemu-user on every corpus file, the host build on the same
files, and each output JPEG must be byte-identical. Every unmodified original of
bench/corpus.py (ORIGINALS: 4:2:0, 4:2:2, 4:4:4, progressive, ICC, EXIF-rotated) must be among
the files: a corpus without one of them fails the check rather than passing on fewer files.
The result has a row per file with its class (from the corpus's manifest.json) and the codec
path the host build took, so the report can show which paths the comparison reached.

  bench/arm64_codec.py CORPUS_DIR ARM64_CODEC_BENCH HOST_CODEC_BENCH [--json FILE]

Exits 1 when an output differs. qemu comes from bench/init_time.py (Debian's packages,
unpacked into bench/.qemu)."""
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from corpus import ORIGINALS
from init_time import qemu_aarch64


def compress_all(command, files, out_dir):
    """One compress per file (--runs 1, no RSS child), outputs in out_dir; codec_bench's row
    of each file, by name."""
    done = subprocess.run([*command, "--runs", "1", "--no-rss", "--out", out_dir, *map(str, files)],
                          check=True, stdout=subprocess.PIPE, text=True)
    return {row["file"]: row for row in map(json.loads, done.stdout.splitlines())}


def main(args):
    json_path = args.pop(args.index("--json") + 1) if "--json" in args else None
    args = [a for a in args if a != "--json"]
    corpus, arm64_bin, host_bin = (Path(a) for a in args)
    files = sorted([*corpus.glob("*.jpg"), *corpus.glob("*.png")])
    missing = sorted({entry[0] for entry in ORIGINALS} - {f.name for f in files})
    if missing:
        sys.exit(f"arm64_codec: the corpus {corpus} lacks originals: {', '.join(missing)}")
    manifest_path = corpus / "manifest.json"
    manifest = {m["file"]: m for m in json.loads(manifest_path.read_text())} if manifest_path.exists() else {}
    qemu = qemu_aarch64()
    if not qemu:
        sys.exit("arm64_codec: no qemu-user: cannot run the arm64 build")
    with tempfile.TemporaryDirectory() as tmp:
        host_out, arm64_out = os.path.join(tmp, "host"), os.path.join(tmp, "arm64")
        host_rows = compress_all([str(host_bin)], files, host_out)
        arm64_rows = compress_all([*qemu, str(arm64_bin)], files, arm64_out)
        rows = []
        for file in files:
            host, arm64 = (Path(d) / f"{file.name}.jpg" for d in (host_out, arm64_out))
            about = manifest.get(file.name, {})
            rows.append({"file": file.name, "bytes": host.stat().st_size,
                         "identical": filecmp.cmp(host, arm64, shallow=False),
                         "path": host_rows[file.name]["path"], "arm64_path": arm64_rows[file.name]["path"],
                         **{key: about.get(key) for key in ("original", "subsampling", "progressive", "icc_bytes",
                                                            "orientation")}})
    identical = sum(row["identical"] for row in rows)
    print(f"arm64 build under qemu-user: {identical} of {len(rows)} outputs byte-identical to the host build's")
    for row in rows:
        if not row["identical"]:
            print(f"  differs: {row['file']}")
    if json_path:
        Path(json_path).write_text(json.dumps({"files": rows, "identical": identical, "total": len(rows)}, indent=1))
    sys.exit(0 if identical == len(rows) else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
