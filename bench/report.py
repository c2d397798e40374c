"""Joins the two codec benchmark runs into one result, a Markdown table and a chart.

    python bench/report.py OURS.jsonl PILLOW.jsonl MANIFEST.json [--json OUT] [--chart PNG] [--doc MD]

Without --doc the table goes to stdout. With it, the block between the codec-bench markers in
MD is replaced (the hand-written text around it stays).

Medians are given for the re-saved JPEGs and the PNGs (issue 5's corpus), and for the
unmodified original JPEGs (issue 14) overall, per chroma subsampling (4:2:0, 4:2:2, 4:4:4) so
that no class hides behind another, for the progressive ones with the share of time spent
reading the input (the coefficients, on the requantisation path), and for the EXIF-rotated ones.
"""

import json
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

MB = 1e6
# Issue 5's acceptance figures.
TARGETS = {"jpeg": {"speed": 1.5, "bytes": 0.95}, "png": {"speed": 2.0, "bytes": 1.0}, "rss_24mp_jpeg_mb": 300}
# Issue 14's, on the unmodified originals: overall, then within each subsampling class.
ORIGINAL_TARGETS = {"speed": 1.5, "class_speed": 1.3, "bytes": 0.95}
SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:4")


def load(ours_path, pillow_path, manifest_path):
    ours = {r["file"]: r for r in map(json.loads, Path(ours_path).read_text().splitlines())}
    pillow = {r["file"]: r for r in map(json.loads, Path(pillow_path).read_text().splitlines())}
    manifest = {m["file"]: m for m in json.loads(Path(manifest_path).read_text())}
    rows = []
    for name, o in ours.items():
        p, m = pillow[name], manifest[name]
        rows.append({
            "file": name, "kind": "png" if m["format"] == "png" else "jpeg", "format": m["format"],
            "original": m.get("original", False), "subsampling": m.get("subsampling"),
            "progressive": m.get("progressive", m["format"] == "pjpeg"), "icc_bytes": m.get("icc_bytes", 0),
            "orientation": m.get("orientation"), "path": o.get("path"),
            # On the requantisation path the codec's decode time is reading the coefficients.
            "read_share": o["decode_median_s"] / o["median_s"] if o.get("decode_median_s") is not None else None,
            "source": m["package"], "resized": m["resized"], "megapixels": o["megapixels"],
            "ours_mp_s": o["mp_per_s"], "pillow_mp_s": p["mp_per_s"], "speed_ratio": o["mp_per_s"] / p["mp_per_s"],
            "ours_bytes": o["output_bytes"], "pillow_bytes": p["output_bytes"],
            "bytes_ratio": o["output_bytes"] / p["output_bytes"], "ours_ssim": p.get("ours_ssim"),
            "pillow_ssim": p["ssim"], "ours_dssim": p.get("ours_dssim"), "pillow_dssim": p["dssim"],
            "dssim_ratio": p["ours_dssim"] / p["dssim"] if p.get("ours_dssim") is not None and p["dssim"] else None,
            "ours_rss_mb": o["peak_rss_kib"] * 1024 / MB,
            "pillow_rss_mb": p["peak_rss_kib"] * 1024 / MB, "kept_original": o["kept_original"], "runs": o["runs"],
        })
    return sorted(rows, key=lambda r: (r["original"], r["kind"], r["subsampling"] or "", r["megapixels"]))


def groups(rows):
    """(key, label, rows) of every group that gets its medians, those with no file left out."""
    resaved = [r for r in rows if not r["original"]]
    originals = [r for r in rows if r["original"]]
    found = [(kind, f"{kind.upper()} inputs, re-saved" if kind == "jpeg" else f"{kind.upper()} inputs",
              [r for r in resaved if r["kind"] == kind]) for kind in ("jpeg", "png")]
    found.append(("original", "original JPEGs", originals))
    found += [(s, f"original {s} JPEGs", [r for r in originals if r["subsampling"] == s]) for s in SUBSAMPLINGS]
    found.append(("progressive", "original progressive JPEGs", [r for r in originals if r["progressive"]]))
    found.append(("rotated", "original JPEGs with EXIF orientation 2-8",
                  [r for r in originals if (r["orientation"] or 1) != 1]))
    return [(key, label, group) for key, label, group in found if group]


def summary(group, key, label):
    keys = ["megapixels", "ours_mp_s", "pillow_mp_s", "speed_ratio", "ours_bytes", "pillow_bytes", "bytes_ratio",
            "ours_ssim", "pillow_ssim", "ours_dssim", "pillow_dssim", "dssim_ratio", "ours_rss_mb", "pillow_rss_mb",
            "read_share"]
    return {"file": f"median, {len(group)} {label}", "kind": key, "format": "", "group_size": len(group),
            "paths": {path: sum(r["path"] == path for r in group) for path in sorted({r["path"] for r in group})},
            **{k: statistics.median(r[k] for r in group) for k in keys if all(r.get(k) is not None for r in group)}}


def original_verdicts(medians):
    """Issue 14's acceptance lines, on the unmodified originals."""
    t, lines = ORIGINAL_TARGETS, []
    if "original" in medians:
        med = medians["original"]
        ok = med["speed_ratio"] >= t["speed"] and med["bytes_ratio"] <= t["bytes"] and med["dssim_ratio"] <= 1.0
        lines.append(f"- Original JPEGs, overall: {med['speed_ratio']:.2f}x Pillow's speed (target >= {t['speed']}x), "
                     f"{med['bytes_ratio']:.3f}x its bytes (target <= {t['bytes']}x), {med['dssim_ratio']:.4f}x its "
                     f"DSSIM (target <= 1): **{'met' if ok else 'not met'}**")
    for s in SUBSAMPLINGS:
        if s in medians:
            med = medians[s]
            ok = med["speed_ratio"] >= t["class_speed"]
            lines.append(f"- Original {s} JPEGs ({med['group_size']}): {med['speed_ratio']:.2f}x Pillow's speed "
                         f"(target >= {t['class_speed']}x), {med['bytes_ratio']:.3f}x its bytes, "
                         f"{med['dssim_ratio']:.4f}x its DSSIM; paths {paths(med)}: **{'met' if ok else 'not met'}**")
    if "progressive" in medians:
        med = medians["progressive"]
        lines.append(f"- Original progressive JPEGs ({med['group_size']}): {med['speed_ratio']:.2f}x Pillow's speed, "
                     f"{med['read_share']:.0%} of our time reading the input (median; paths {paths(med)})")
    if "rotated" in medians:
        med = medians["rotated"]
        fast = med["paths"].get("requantized", 0) == med["group_size"]
        ok = fast and med["dssim_ratio"] <= 1.01
        lines.append(f"- EXIF-rotated originals ({med['group_size']}): paths {paths(med)}, "
                     f"{med['dssim_ratio']:.4f}x the DSSIM of Pillow's output turned upright (target: every one "
                     f"requantized, within 1%): **{'met' if ok else 'not met'}**")
    return lines


def paths(med):
    return ", ".join(f"{count} {path}" for path, count in med["paths"].items())


def verdicts(rows, medians):
    lines = []
    for kind, med in medians.items():
        if kind not in TARGETS:
            continue
        t = TARGETS[kind]
        ok = med["speed_ratio"] >= t["speed"] and med["bytes_ratio"] <= t["bytes"]
        # "At equal or better DSSIM": like speed and bytes, the median of the per-file ratios.
        if kind == "jpeg":
            ok = ok and med["dssim_ratio"] <= 1.0
        lines.append(f"- {kind.upper()} inputs: {med['speed_ratio']:.2f}x Pillow's speed (target >= {t['speed']}x), "
                     f"{med['bytes_ratio']:.3f}x its bytes (target <= {t['bytes']}x), {med['dssim_ratio']:.4f}x its DSSIM "
                     f"(target <= 1; medians {fmt_dssim(med['ours_dssim'])} vs {fmt_dssim(med['pillow_dssim'])}), "
                     f"SSIM {med['ours_ssim']:.4f} vs {med['pillow_ssim']:.4f}: **{'met' if ok else 'not met'}**")
    lines += original_verdicts(medians)
    big = [r for r in rows if r["kind"] == "jpeg" and r["megapixels"] >= 23.5]
    for r in big:
        ok = r["ours_rss_mb"] <= TARGETS["rss_24mp_jpeg_mb"]
        lines.append(f"- {r['file']} ({r['megapixels']:.1f} MP {r['subsampling'] or ''} JPEG): peak RSS "
                     f"{r['ours_rss_mb']:.0f} MB (Pillow {r['pillow_rss_mb']:.0f} MB; target <= 300 MB): "
                     f"**{'met' if ok else 'not met'}**")
    return lines


def fmt_ssim(value):
    return "" if value is None else f"{value:.4f}"


def fmt_dssim(value):
    return "" if value is None else f"{value:.5f}"


def table(rows, medians):
    head = ("| file | input | path | read % | MP | ours MP/s | Pillow MP/s | speed x | ours KB | Pillow KB | bytes x | "
            "SSIM ours | SSIM Pillow | DSSIM ours | DSSIM Pillow | DSSIM x | RSS ours MB | RSS Pillow MB |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows + list(medians.values()):
        name = r["file"] + (" (kept original)" if r.get("kept_original") else "")
        read = "" if r.get("read_share") is None else f"{r['read_share']:.0%}"
        out.append(f"| {name} | {describe(r)} | {r.get('path') or paths(r)} | {read} | {r['megapixels']:.1f} | "
                   f"{r['ours_mp_s']:.1f} | {r['pillow_mp_s']:.1f} | "
                   f"{r['speed_ratio']:.2f} | {r['ours_bytes'] / 1e3:.0f} | {r['pillow_bytes'] / 1e3:.0f} | "
                   f"{r['bytes_ratio']:.3f} | {fmt_ssim(r.get('ours_ssim'))} | {fmt_ssim(r['pillow_ssim'])} | "
                   f"{fmt_dssim(r.get('ours_dssim'))} | {fmt_dssim(r['pillow_dssim'])} | "
                   f"{'' if r.get('dssim_ratio') is None else format(r['dssim_ratio'], '.4f')} | "
                   f"{r['ours_rss_mb']:.0f} | {r['pillow_rss_mb']:.0f} |")
    return out


def describe(row):
    """The input's class: format, then subsampling, ICC and EXIF orientation where they matter."""
    if "group_size" in row:
        return ""
    parts = [row["format"]]
    if row["original"]:
        parts.append(row["subsampling"])
    if row["icc_bytes"]:
        parts.append("ICC")
    if (row["orientation"] or 1) != 1:
        parts.append(f"EXIF {row['orientation']}")
    return " ".join(parts)


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["file"] for r in rows]
    colours = ["tab:green" if r["original"] else "tab:blue" if r["kind"] == "jpeg" else "tab:orange" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.35 * len(rows) + 1.5), sharey=True)
    panels = [("speed_ratio", "speed vs Pillow (x)", [1.5, 2.0]), ("bytes_ratio", "bytes vs Pillow (x)", [0.95, 1.0]),
              ("ours_rss_mb", "peak RSS, ours (MB)", [300])]
    for ax, (key, title, lines) in zip(axes, panels):
        ax.barh(names, [r[key] for r in rows], color=colours)
        for x in lines:
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
        ax.set_title(title)
    axes[0].invert_yaxis()
    fig.suptitle("imgpipe codec vs Pillow q50, single thread (green: original JPEGs, blue: re-saved JPEGs, "
                 "orange: PNG; dashed: targets)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def replace_block(doc, name, lines):
    """`doc` with the lines between its `<!-- NAME:start -->` and `<!-- NAME:end -->` markers
    replaced (the hand-written text around them stays). Also used by pipeline_report.py."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    before, found, rest = doc.partition(start)
    if not found:
        raise SystemExit(f"{name}: no {start} marker in the document")
    return before + "\n".join([start, *lines, end]) + rest.partition(end)[2]


def main(args):
    opts = {a: args[i + 1] for i, a in enumerate(args) if a.startswith("--")}
    rows = load(*args[:3])
    medians = {key: summary(group, key, label) for key, label, group in groups(rows)}
    taken = datetime.now(timezone.utc)
    block = [f"Measured {taken:%Y-%m-%d} on {platform.machine()}, {rows[0]['runs']} timed run(s) per file "
             "(median) after a warm-up, single thread, on a shared 2-core machine. Files named o420-, o422-, "
             "o444- are original JPEGs as their packages ship them (the subsampling in the name); "
             "\"read %\" is the share of our time spent reading the input (its coefficients, on the "
             "requantized path):", "", *table(rows, medians), "",
             *verdicts(rows, medians)]
    if "--json" in opts:
        Path(opts["--json"]).write_text(json.dumps(
            {"taken": taken.isoformat(), "machine": platform.platform(), "rows": rows, "medians": medians}, indent=1))
    if "--chart" in opts:
        chart(rows, opts["--chart"])
    if "--doc" in opts:
        doc = Path(opts["--doc"]).read_text()
        Path(opts["--doc"]).write_text(replace_block(doc, "codec-bench", block))
    else:
        print("\n".join(block))


if __name__ == "__main__":
    main(sys.argv[1:])
