#!/usr/bin/env python3
"""Function init time: from process start to the first poll of the Lambda Runtime API
(GET /2018-06-01/runtime/invocation/next), for each function binary, median of N starts.

  bench/init_time.py [BIN_DIR] [RUNS] [--json FILE]     (default target/release, 15)

With --json, the medians go to FILE with the size of each function's arm64 zip
(<target>/lambda/<function>/bootstrap.zip beside BIN_DIR, from `make package`) when it exists.

Each arm64 zip's bootstrap is also started under qemu's user-mode emulator (Debian's
qemu-user-static and an arm64 glibc, fetched with `apt-get download` and unpacked into
bench/.qemu, nothing installed): it shows that the build Lambda would run starts and polls the
Runtime API. Its time is the emulator's, tens of times a real arm64 CPU's: no Graviton figure.

A local socket plays the Runtime API; the binaries get the environment Lambda would give
them (credentials and region in variables, so the SDK looks nothing up). The api and the
notifier read the webhook signing key from Secrets Manager before their first poll: a local
HTTP server answers that call on loopback (AWS_ENDPOINT_URL), so their figure has the SDK's
request but not AWS's round trip."""
import glob
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {
    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "init-time", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "_HANDLER": "bootstrap",
    "TABLE_NAME": "t", "BUCKET_NAME": "b", "QUEUE_URL": "http://127.0.0.1:9/q", "PATH": "/usr/bin:/bin",
}


QEMU_DIR = os.path.join(ROOT, "bench", ".qemu")


class SecretsManager(http.server.BaseHTTPRequestHandler):
    """GetSecretValue, the only call a function makes before its first poll."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:init-time",
                           "Name": "init-time", "VersionId": "v1", "SecretString": "k" * 64}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve_secrets_manager():
    """Starts SecretsManager on a loopback port and points the functions' SDK at it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SecretsManager)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ENV["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{server.server_address[1]}"
    ENV["WEBHOOK_SIGNING_SECRET_ID"] = "init-time"


def qemu_aarch64():
    """The command prefix that runs an arm64 Linux binary here, or None when Debian's packages
    cannot be fetched."""
    qemu = os.path.join(QEMU_DIR, "usr", "bin", "qemu-aarch64-static")
    if not os.path.exists(qemu):
        os.makedirs(QEMU_DIR, exist_ok=True)
        # Only the parts used: the package has an emulator for every architecture (375 MB).
        for package, part in (("libc6-arm64-cross", "./usr/aarch64-linux-gnu"),
                              ("qemu-user-static", "./usr/bin/qemu-aarch64-static")):
            if subprocess.run(["apt-get", "download", "-q", package], cwd=QEMU_DIR).returncode != 0:
                print(f"init_time: cannot fetch {package}: no arm64 start", file=sys.stderr)
                return None
            [deb] = glob.glob(os.path.join(QEMU_DIR, f"{package}_*.deb"))
            tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", QEMU_DIR, part], stdin=tar.stdout, check=True)
            if tar.wait() != 0:
                sys.exit(f"init_time: dpkg-deb failed on {deb}")
            os.remove(deb)
    return [qemu, "-L", os.path.join(QEMU_DIR, "usr", "aarch64-linux-gnu")]


def first_poll_ms(command):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        env = dict(ENV, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.getsockname()[1]}")
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server.settimeout(10)
        connection, _ = server.accept()
        with connection:
            request = connection.recv(4096)
            elapsed = (time.perf_counter() - started) * 1000
        process.kill()
        process.wait()
        if b"/runtime/invocation/next" not in request:
            sys.exit(f"{command[-1]}: unexpected first request {request[:80]!r}")
        return elapsed


QEMU_RUNS = 5


def median_of_starts(command, runs):
    """Times of `runs` starts, after one that warms the page cache (as a Lambda's second start
    would find it)."""
    first_poll_ms(command)
    return [first_poll_ms(command) for _ in range(runs)]


def main():
    args = sys.argv[1:]
    json_path = None
    if "--json" in args:
        json_path = args.pop(args.index("--json") + 1)
        args.remove("--json")
    bin_dir = args[0] if args else os.path.join(ROOT, "target", "release")
    runs = int(args[1]) if len(args) > 1 else 15
    qemu = None
    serve_secrets_manager()
    result = {"machine": f"{os.cpu_count()} cores, {os.uname().machine}", "runs": runs, "functions": {}}
    for name in ("api", "worker", "notifier", "authorizer"):
        binary = os.path.join(bin_dir, name)
        times = median_of_starts([binary], runs)
        print(f"{name:9} init to first poll: median {statistics.median(times):6.1f} ms, "
              f"min {min(times):6.1f}, max {max(times):6.1f} ({runs} starts, {os.path.getsize(binary) // 1024} KiB)")
        entry = {"init_median_ms": statistics.median(times), "init_min_ms": min(times), "init_max_ms": max(times),
                 "host_binary_bytes": os.path.getsize(binary)}
        # cargo-lambda puts the zips beside release/ in the same target directory.
        zipped = os.path.join(os.path.dirname(os.path.abspath(bin_dir)), "lambda", name, "bootstrap.zip")
        if os.path.exists(zipped):
            entry["arm64_zip_bytes"] = os.path.getsize(zipped)
            print(f"{name:9} arm64 zip: {entry['arm64_zip_bytes'] / 1e6:.2f} MB")
            qemu = qemu if qemu is not None else qemu_aarch64() or []
            if qemu:
                with tempfile.TemporaryDirectory() as unzipped:
                    zipfile.ZipFile(zipped).extract("bootstrap", unzipped)
                    bootstrap = os.path.join(unzipped, "bootstrap")
                    os.chmod(bootstrap, 0o755)
                    emulated = median_of_starts([*qemu, bootstrap], QEMU_RUNS)
                entry["arm64_qemu_init_median_ms"] = statistics.median(emulated)
                print(f"{name:9} arm64 bootstrap under qemu-user: first poll after "
                      f"{entry['arm64_qemu_init_median_ms']:.0f} ms (emulated, median of {QEMU_RUNS})")
        result["functions"][name] = entry
    if json_path:
        with open(json_path, "w") as out:
            json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
