#!/usr/bin/env python3
"""What the API-key authorizer costs per call on the running local stack (`make up`, which
deploys with AuthorizerCacheSeconds 0, so every call asks the authorizer).

  .venv/bin/python bench/authorizer_cost.py [CALLS]      (default 200)

Sends CALLS pairs of sequential GETs, alternating: `GET /api/health` (no authorizer) and an
unknown path with the local key (authorizer, then the same API function answers 404), and
reports the median of each and their difference. Then reads the authorizer's CloudWatch Logs
on the emulator: its own `duration_ms` per decision (the handler: key lookup, SHA-256, the
last-use write when due) and the emulator's REPORT durations (the invocation as the emulator
times it)."""
import http.client
import json
import os
import re
import statistics
import sys
import time
import urllib.parse

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.path.join(ROOT, ".stack", "local")


def timed_get(port, host, path, headers):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    connection.request("GET", path, headers={"Host": host, **headers})
    response = connection.getresponse()
    response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    return response.status, elapsed


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with open(os.path.join(STATE, "outputs.json")) as f:
        outputs = json.load(f)
    with open(os.path.join(STATE, "api_key")) as f:
        key = f.read().strip()
    api = urllib.parse.urlsplit(outputs["ApiUrl"])
    open_times, keyed_times = [], []
    for _ in range(calls):
        status, elapsed = timed_get(api.port, api.netloc, "/api/health", {})
        assert status not in (401, 403), status
        open_times.append(elapsed)
        status, elapsed = timed_get(api.port, api.netloc, "/api/no-such-path", {"Authorization": f"Bearer {key}"})
        assert status == 404, f"the keyed call answered {status}"
        keyed_times.append(elapsed)
    print(f"{calls} calls each, sequential, medians:")
    print(f"  GET /api/health, no authorizer:     {median(open_times):6.1f} ms")
    print(f"  GET with the key, authorizer + API: {median(keyed_times):6.1f} ms")
    print(f"  the authorizer's share:             {median(keyed_times) - median(open_times):6.1f} ms")

    logs = boto3.client("logs", endpoint_url=outputs["Endpoint"], region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")
    group = f"/aws/lambda/{outputs['AuthorizerFunctionName']}"
    handler, reports = [], []
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
        for event in page["events"]:
            message = event["message"]
            if message.startswith("{"):
                line = json.loads(message)
                if line.get("stage") == "authorizer" and "duration_ms" in line:
                    handler.append(float(line["duration_ms"]))
            elif found := re.match(r"REPORT RequestId: \S+\s+Duration: ([\d.]+) ms", message):
                reports.append(float(found.group(1)))
    print(f"authorizer log lines ({len(handler)} decisions since the stack started):")
    print(f"  handler (duration_ms): median {median(handler):.2f} ms, max {max(handler, default=float('nan')):.2f} ms")
    print(f"  emulator REPORT Duration: median {median(reports):.1f} ms over {len(reports)} invocations")


if __name__ == "__main__":
    main()
