#!/usr/bin/env python3
"""`make run`'s demo on the running local stack: saves the stack's URL and the tenant `local`'s
key as the `local` profile of the imgpipe CLI's config file, serves the sample images from a
local HTTP server, submits a sample CSV with the CLI (`imgpipe submit --wait`: progress, then
the summary) with a local webhook receiver, then saves and prints the output CSV and the
compressed images."""
import http.client
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.path.join(ROOT, ".stack", "local")
SAMPLES = os.path.join(ROOT, "infra", "sample")
# `make build` builds the CLI with the functions, where cargo puts them.
CLI = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "debug", "imgpipe")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(handler, port):
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as error:
        sys.exit(f"run: cannot listen on 127.0.0.1:{port} ({error}); the stack allows the worker to fetch only from there")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


webhooks = []


class WebhookReceiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        webhooks.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


# The local tenant's API key, made by `make up` (infra/local.py up --key-for local).
API_KEY = None


def request(method, url, body=None, headers=None, host=None):
    """One HTTP request to 127.0.0.1; `host` sets the Host header the API is routed by. Requests
    to the API carry the key; presigned S3 URLs (no `host`) must not."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=30)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {**(headers or {}), "Host": host or parts.netloc}
    if host:
        headers["Authorization"] = f"Bearer {API_KEY}"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def download(url, api_host):
    """GET an API link, following its redirect to the presigned S3 URL."""
    status, headers, body = request("GET", url, host=api_host)
    location = headers.get("location") or headers.get("Location")
    if status in (301, 302, 303, 307) and location:
        status, headers, body = request("GET", location)
    if status != 200:
        sys.exit(f"run: GET {url} answered {status}: {body[:200]!r}")
    return body


def main():
    with open(os.path.join(STATE, "outputs.json")) as f:
        outputs = json.load(f)
    api = outputs["ApiUrl"]
    api_host = urllib.parse.urlsplit(api).netloc
    global API_KEY
    try:
        with open(os.path.join(STATE, "api_key")) as f:
            API_KEY = f.read().strip()
    except FileNotFoundError:
        sys.exit("run: no API key for the local stack; run `make up` (or `make run`), which makes one")
    # The stack lets the worker and the notifier reach exactly these two loopback ports
    # (infra/local.py --allow-hosts); any other private address is refused.
    allowed = [host.rsplit(":", 1)[1] for host in outputs["AllowHosts"].split(",") if host]
    if len(allowed) < 2:
        sys.exit("run: the stack allows no local ports; restart it with `make stop run`")
    images = serve(lambda *a: Quiet(*a, directory=SAMPLES), int(allowed[0]))
    hook_port = serve(WebhookReceiver, int(allowed[1]))

    base = f"http://127.0.0.1:{images}"
    csv = ("S. No.,Product Name,Input Image Urls\n"
           f"1,Mountain Landscape Print,{base}/landscape.jpg\n"
           f"2,Red Ceramic Plate,\"{base}/product.png, {base}/landscape.jpg\"\n")
    os.makedirs(STATE, exist_ok=True)
    with open(os.path.join(STATE, "sample.csv"), "w") as f:
        f.write(csv)
    print(f"\nUploading {os.path.relpath(os.path.join(STATE, 'sample.csv'), ROOT)} (3 images served from {base}):")
    print(csv)

    # The CLI's `local` profile: it becomes the default when the config file has none yet
    # (IMGPIPE_CONFIG, else imgpipe/config.toml in the user's config directory).
    subprocess.run([CLI, "--profile", "local", "--api-url", api, "--api-key", API_KEY, "configure"], check=True)
    hook = f"http://127.0.0.1:{hook_port}/hook"
    print(f"$ imgpipe --profile local submit sample.csv --webhook {hook} --wait --no-output")
    started = time.time()
    # Progress goes to stderr (a live bar on a terminal); the request id and summary to stdout.
    submitted = subprocess.run([CLI, "--profile", "local", "submit", "sample.csv", "--webhook", hook, "--wait",
                                "--no-output"], cwd=STATE, stdout=subprocess.PIPE, text=True, timeout=180)
    sys.stdout.write(submitted.stdout)
    if submitted.returncode != 0:
        sys.exit(f"run: imgpipe submit exited {submitted.returncode}; see .stack/local/emulator.log")
    request_id = submitted.stdout.split()[0]
    _, _, body = request("GET", f"{api}/api/status/{request_id}/", host=api_host)
    progress = json.loads(body)
    print(f"Final state after {time.time() - started:.1f} s:\n{json.dumps(progress, indent=2)}")

    results = os.path.join(STATE, "results", request_id)
    os.makedirs(results, exist_ok=True)
    output_csv = download(progress["output_csv_url"], api_host)
    with open(os.path.join(results, "output.csv"), "wb") as f:
        f.write(output_csv)
    print(f"\nOutput CSV (saved to {os.path.relpath(results, ROOT)}/output.csv):\n{output_csv.decode()}")

    import csv as csvlib
    rows = list(csvlib.reader(output_csv.decode().splitlines()))[1:]
    print(f"Compressed images in s3://{outputs['BucketName']}/tenants/local/output/{request_id}/, copies in "
          f"{os.path.relpath(results, ROOT)}/:")
    index = 0
    for row in rows:
        for source, output in zip(row[2].split(","), row[3].split(",")):
            name = f"{index:05}.jpg"
            index += 1
            if not output:
                print(f"  {name}: failed (see the status's failures)")
                continue
            data = download(output, api_host)
            with open(os.path.join(results, name), "wb") as f:
                f.write(data)
            size_in = os.path.getsize(os.path.join(SAMPLES, os.path.basename(source.strip())))
            print(f"  {name}  {size_in:>8} B -> {len(data):>7} B  from {source.strip()}")

    for _ in range(50):
        if webhooks:
            break
        time.sleep(0.1)
    print(f"\nWebhook received: {json.dumps(webhooks[0]) if webhooks else 'none yet'}")
    print(f"""
The stack stays up for your own CSVs (`make stop` stops it). The CLI's profile `local` points at
it (docs/cli.md; `cargo install --path cli` puts `imgpipe` on your PATH, or call {os.path.relpath(CLI, ROOT)}):
  imgpipe --profile local submit products.csv --wait
  imgpipe --profile local list
Every call but /api/health needs the key (tenant `local`; `make key TENANT=<name>` makes one for another tenant):
  export API={api} KEY={API_KEY}
  curl -H "Authorization: Bearer $KEY" -F file=@products.csv -F webhook_url=https://example.com/hook {api}/api/upload/
  curl -H "Authorization: Bearer $KEY" {api}/api/status/<request_id>/
  curl -H "Authorization: Bearer $KEY" -L {api}/api/requests/<request_id>/output.csv
  curl {api}/api/health
or put a CSV into s3://{outputs['BucketName']}/incoming/local/<name>.csv: its receipt appears as receipts/local/<name>.json.
AWS CLI or SDKs reach the emulator with: eval "$(.venv/bin/python infra/local.py env)"
""")


if __name__ == "__main__":
    main()
