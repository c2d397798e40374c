#!/usr/bin/env python3
"""Function init time: from process start to the first poll of the Lambda Runtime API
(GET /2018-06-01/runtime/invocation/next), for each function binary, median of N starts.

  bench/init_time.py [BIN_DIR] [RUNS]      (default target/release, 15)

A local socket plays the Runtime API; the binaries get the environment Lambda would give
them (credentials and region in variables, so the SDK looks nothing up)."""
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
    bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    for name in ("api", "worker", "notifier"):
        binary = os.path.join(bin_dir, name)
        first_poll_ms(binary)  # warm the page cache, as a Lambda's second start would be
        times = [first_poll_ms(binary) for _ in range(runs)]
        print(f"{name:9} init to first poll: median {statistics.median(times):6.1f} ms, "
              f"min {min(times):6.1f}, max {max(times):6.1f} ({runs} starts, {os.path.getsize(binary) // 1024} KiB)")


if __name__ == "__main__":
    main()
