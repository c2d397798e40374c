#!/usr/bin/env python3
"""Function init time: from process start to the first poll of the Lambda Runtime API
(GET /2018-06-01/runtime/invocation/next), for each function binary, median of N starts.

  bench/init_time.py [BIN_DIR] [RUNS] [--json FILE]     (default target/release, 15)

With --json, the medians go to FILE with the size of each function's arm64 zip
(target/lambda/<function>/bootstrap.zip, from `make package`) when it exists.

A local socket plays the Runtime API; the binaries get the environment Lambda would give
them (credentials and region in variables, so the SDK looks nothing up)."""
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {
    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "init-time", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "_HANDLER": "bootstrap",
    "TABLE_NAME": "t", "BUCKET_NAME": "b", "QUEUE_URL": "http://127.0.0.1:9/q", "PATH": "/usr/bin:/bin",
}


def first_poll_ms(binary):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        env = dict(ENV, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.getsockname()[1]}")
        started = time.perf_counter()
        process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server.settimeout(10)
        connection, _ = server.accept()
        with connection:
            request = connection.recv(4096)
            elapsed = (time.perf_counter() - started) * 1000
        process.kill()
        process.wait()
        if b"/runtime/invocation/next" not in request:
            sys.exit(f"{binary}: unexpected first request {request[:80]!r}")
        return elapsed


def main():
    args = sys.argv[1:]
    json_path = None
    if "--json" in args:
        json_path = args.pop(args.index("--json") + 1)
        args.remove("--json")
    bin_dir = args[0] if args else os.path.join(ROOT, "target", "release")
    runs = int(args[1]) if len(args) > 1 else 15
    result = {"machine": f"{os.cpu_count()} cores, {os.uname().machine}", "runs": runs, "functions": {}}
    for name in ("api", "worker", "notifier"):
        binary = os.path.join(bin_dir, name)
        first_poll_ms(binary)  # warm the page cache, as a Lambda's second start would be
        times = [first_poll_ms(binary) for _ in range(runs)]
        print(f"{name:9} init to first poll: median {statistics.median(times):6.1f} ms, "
              f"min {min(times):6.1f}, max {max(times):6.1f} ({runs} starts, {os.path.getsize(binary) // 1024} KiB)")
        entry = {"init_median_ms": statistics.median(times), "init_min_ms": min(times), "init_max_ms": max(times),
                 "host_binary_bytes": os.path.getsize(binary)}
        zipped = os.path.join(ROOT, "target", "lambda", name, "bootstrap.zip")
        if os.path.exists(zipped):
            entry["arm64_zip_bytes"] = os.path.getsize(zipped)
            print(f"{name:9} arm64 zip: {entry['arm64_zip_bytes'] / 1e6:.2f} MB")
        result["functions"][name] = entry
    if json_path:
        with open(json_path, "w") as out:
            json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
