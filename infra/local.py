#!/usr/bin/env python3
"""The local stack: the AWS emulator (ministack) on 127.0.0.1 running imgpipe's own
template.yaml, with the function binaries built for this host.

  local.py up   [--port P] [--state DIR] [--bin-dir DIR] [--watch-pid PID] [--allow-hosts H]
                [--no-schedule] [--key-for TENANT] [--codec-panic-marker TEXT]   (the last for the test harness only)
  local.py down [--state DIR]
  local.py env  [--state DIR]          print shell exports for the running stack
  local.py key  --tenant TENANT        a new API key for TENANT on the running stack, last line

`up` starts the emulator (or reuses the healthy one already started from DIR), deploys
the template to its CloudFormation and writes the stack's outputs to DIR/outputs.json. With
--key-for, it then makes an API key for that tenant with imgpipe-admin, prints it and keeps
it in DIR/api_key (what `make run` sends).
With --watch-pid, the stack is stopped when that process ends (tests use it so that no
emulator outlives them). With --no-schedule, the sweeper's per-minute schedule is deployed
disabled (the tests run the sweep themselves). `down` stops the emulator and every function
process it ran.
"""
import argparse
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
STACK_NAME = "imgpipe"
ARTIFACTS_BUCKET = "imgpipe-artifacts"
# Template function -> binary, as in template.yaml's BuildProperties.
FUNCTIONS = {"functions/api": "api", "functions/worker": "worker", "functions/notifier": "notifier",
             "functions/authorizer": "authorizer"}
# Template parameters for the local stack: crashed or retried jobs come back in seconds
# rather than minutes, so that tests can watch recovery happen. Everything else is as deployed.
LOCAL_PARAMETERS = {"WorkerTimeout": "20", "JobsVisibilityTimeout": "25", "RetryBaseSeconds": "1",
                    "FetchTimeoutSeconds": "5", "WebhookRedeliverySeconds": "1",
                    # A job needs fetch + codec + 2 x SDK call left to start: 5 + 3 + 10 < 20.
                    "CodecReserveSeconds": "3", "SdkOperationTimeoutSeconds": "5",
                    # The authorizer is asked on every call, so a revoked key is refused at once.
                    "AuthorizerCacheSeconds": "0",
                    # The test harness sets IMGPIPE_FAN_OUT_CHUNK_IMAGES to 20, so that tests of a few
                    # dozen images cross several fan-out chunks; otherwise the deployed 2000.
                    "FanOutChunkImages": os.environ.get("IMGPIPE_FAN_OUT_CHUNK_IMAGES", "2000")}


def fail(message):
    print(f"local stack: {message}", file=sys.stderr)
    sys.exit(1)


def emulator_env(port, allow_hosts="", codec_panic_marker=""):
    """Set before the emulator starts: the functions it runs inherit them, so their SDK
    calls come back to the emulator instead of going to AWS. `allow_hosts` lists the
    loopback `host:port` pairs the worker may fetch from and the notifier may post to (the
    sample-image server, test servers); every other private address stays blocked.
    `codec_panic_marker` arms the worker's test-only fault hook (an image ending with it makes
    the codec panic); only the test harness passes it, and nothing else sets it."""
    env = dict(os.environ)
    env.pop("CODEC_PANIC_MARKER", None)
    env["FETCH_ALLOW_HOSTS"] = allow_hosts
    env["WEBHOOK_ALLOW_HOSTS"] = allow_hosts
    if codec_panic_marker:
        env["CODEC_PANIC_MARKER"] = codec_panic_marker
    env.update({
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    return env


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A zombie child still answers kill(0); treat it as gone.
    status = read(f"/proc/{pid}/stat")
    return not (status and status.split(") ", 1)[-1].startswith("Z"))


def healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_ministack/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def port_taken(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_emulator(state, port, allow_hosts, codec_panic_marker=""):
    running = read(os.path.join(state, "emulator.pid"))
    same = (read(os.path.join(state, "port")) == str(port)
            and (read(os.path.join(state, "allow_hosts")) or "") == allow_hosts
            and (read(os.path.join(state, "codec_panic_marker")) or "") == codec_panic_marker)
    if running and alive(int(running)) and same and healthy(port):
        return False
    if running:
        stop(state)
    if port_taken(port):
        fail(f"port {port} on 127.0.0.1 is taken by another program; choose another with IMGPIPE_PORT")
    ministack = os.path.join(VENV_BIN, "ministack")
    if not os.path.exists(ministack):
        fail("the emulator is not installed; run infra/setup.sh (make setup)")
    os.makedirs(state, exist_ok=True)
    log = open(os.path.join(state, "emulator.log"), "ab")
    # A session of its own, so `down` can stop it and every function process it spawned.
    env = emulator_env(port, allow_hosts, codec_panic_marker)
    # The emulator copies each function's code into a temporary directory (~180 MB a stack) and
    # leaves it behind: keep those under the state directory, which `stop` clears.
    env["TMPDIR"] = os.path.join(state, "tmp")
    os.makedirs(env["TMPDIR"], exist_ok=True)
    process = subprocess.Popen([ministack], env=env, stdout=log,
                               stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True, cwd=state)
    with open(os.path.join(state, "emulator.pid"), "w") as f:
        f.write(str(process.pid))
    with open(os.path.join(state, "port"), "w") as f:
        f.write(str(port))
    with open(os.path.join(state, "allow_hosts"), "w") as f:
        f.write(allow_hosts)
    with open(os.path.join(state, "codec_panic_marker"), "w") as f:
        f.write(codec_panic_marker)
    deadline = time.time() + 30
    while not healthy(port):
        if process.poll() is not None:
            fail(f"the emulator exited with {process.returncode}; see {state}/emulator.log")
        if time.time() > deadline:
            stop(state)
            fail(f"the emulator did not become healthy in 30 s; see {state}/emulator.log")
        time.sleep(0.1)
    return True


def stop(state):
    pid = read(os.path.join(state, "emulator.pid"))
    if pid:
        pid = int(pid)
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + wait
            while alive(pid) and time.time() < deadline:
                time.sleep(0.1)
            if not alive(pid):
                # Function processes share the group; make sure none outlives the emulator.
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                break
    shutil.rmtree(os.path.join(state, "tmp"), ignore_errors=True)
    for name in ("emulator.pid", "port", "allow_hosts", "outputs.json", "api_key"):
        try:
            os.remove(os.path.join(state, name))
        except FileNotFoundError:
            pass


def bootstrap_zip(binary):
    """A Lambda zip: the binary as ./bootstrap, executable, with fixed timestamps so the
    same binary gives the same key."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(binary, "rb") as f:
            archive.writestr(info, f.read())
    return buffer.getvalue()


def deploy(state, port, bin_dir, schedule=True):
    import boto3
    from botocore.exceptions import ClientError

    env = emulator_env(port)
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    client = lambda name: session.client(name, endpoint_url=env["AWS_ENDPOINT_URL"])
    s3, cfn = client("s3"), client("cloudformation")

    try:
        s3.head_bucket(Bucket=ARTIFACTS_BUCKET)
    except ClientError:
        s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    with open(os.path.join(ROOT, "template.yaml")) as f:
        template = f.read()
    for code_uri, binary in FUNCTIONS.items():
        path = os.path.join(bin_dir, binary)
        if not os.path.exists(path):
            fail(f"{path} is missing; build the functions first (cargo build --bins)")
        data = bootstrap_zip(path)
        # Content-addressed: CloudFormation only updates a function whose Code changed.
        key = f"{binary}/{hashlib.sha256(data).hexdigest()}.zip"
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=data)
        # template.yaml names each function's crate for `sam build`; the emulator takes the
        # zip from its own S3 instead.
        template, count = re.subn(rf"CodeUri: {re.escape(code_uri)}\s*\n",
                                  f"CodeUri: {{ Bucket: {ARTIFACTS_BUCKET}, Key: {key} }}\n", template)
        if count != 1:
            fail(f"template.yaml has no single 'CodeUri: {code_uri}'")

    capabilities = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    overrides = dict(LOCAL_PARAMETERS, SweepSchedule="ENABLED" if schedule else "DISABLED")
    parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()]
    try:
        status = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]["StackStatus"]
    except ClientError:
        status = None
    if status and not status.endswith("_COMPLETE") or status in ("ROLLBACK_COMPLETE", "DELETE_COMPLETE"):
        cfn.delete_stack(StackName=STACK_NAME)
        wait_for_stack(cfn, ClientError)
        status = None
    if status is None:
        cfn.create_stack(StackName=STACK_NAME, TemplateBody=template, Capabilities=capabilities,
                         Parameters=parameters)
    else:
        try:
            cfn.update_stack(StackName=STACK_NAME, TemplateBody=template, Capabilities=capabilities,
                             Parameters=parameters)
        except ClientError as error:
            if "No updates are to be performed" not in str(error):
                raise
    final = wait_for_stack(cfn, ClientError)
    if final not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        for event in cfn.describe_stack_events(StackName=STACK_NAME)["StackEvents"]:
            if "FAILED" in event.get("ResourceStatus", ""):
                print(f"  {event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}", file=sys.stderr)
        fail(f"deploying template.yaml ended in {final}")

    stack = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    # The emulator's CloudFormation ignores TimeToLiveSpecification; AWS applies it.
    client("dynamodb").update_time_to_live(
        TableName=outputs["TableName"], TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    outputs["Endpoint"] = env["AWS_ENDPOINT_URL"]
    outputs["AllowHosts"] = read(os.path.join(state, "allow_hosts")) or ""
    # Host-based address of the API: curl resolves *.localhost to 127.0.0.1 by itself.
    outputs["ApiUrl"] = f"http://{outputs['ApiId']}.execute-api.localhost:{port}"
    outputs["ApiPathUrl"] = f"http://127.0.0.1:{port}/_aws/execute-api/{outputs['ApiId']}/$default"
    with open(os.path.join(state, "outputs.json"), "w") as f:
        json.dump(outputs, f, indent=2)
    return outputs


def wait_for_stack(cfn, client_error, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]["StackStatus"]
        except client_error:
            return None
        if not status.endswith("_IN_PROGRESS"):
            return status
        time.sleep(0.2)
    fail(f"the stack did not settle in {timeout} s")


def create_key(state, bin_dir, tenant):
    """A new API key for `tenant` on the running stack, made by imgpipe-admin (which prints it
    on its last line); returns what it printed."""
    admin = os.path.join(bin_dir, "imgpipe-admin")
    if not os.path.exists(admin):
        fail(f"{admin} is missing; build it first (cargo build --bins)")
    if not os.path.exists(os.path.join(state, "outputs.json")):
        fail("no stack is running; start it with `make up`")
    done = subprocess.run([admin, "--local", "--stack-dir", state, "keys", "create", "--tenant", tenant],
                          stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        fail(f"imgpipe-admin could not create a key for {tenant!r}")
    return done.stdout


def watch(state, pid):
    """Stops the stack once `pid` has ended (a detached process of its own)."""
    if os.fork():
        return
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    emulator = read(os.path.join(state, "emulator.pid"))
    while alive(pid) and emulator and alive(int(emulator)):
        time.sleep(0.5)
    if read(os.path.join(state, "emulator.pid")) == emulator:
        stop(state)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "env", "key"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("IMGPIPE_PORT", "4599")))
    parser.add_argument("--state", default=os.path.join(ROOT, ".stack", "local"))
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    parser.add_argument("--bin-dir", default=os.path.join(target, "debug"))
    parser.add_argument("--watch-pid", type=int)
    parser.add_argument("--key-for", metavar="TENANT", help="up: then make an API key for TENANT and keep it in "
                                                            "STATE/api_key")
    parser.add_argument("--tenant", help="key: the tenant the new key speaks for")
    parser.add_argument("--allow-hosts", default=None,
                        help="comma-separated 127.0.0.1:<port> pairs the functions may reach (default: the "
                             "sample-image and webhook ports of `make run`, PORT+1 and PORT+2)")
    parser.add_argument("--no-schedule", action="store_true",
                        help="deploy with the sweeper's per-minute schedule disabled (the tests run the sweep "
                             "themselves, so that no scheduled sweep races them)")
    parser.add_argument("--codec-panic-marker", default="",
                        help="test harness only: the worker's codec panics on an image whose bytes end with this "
                             "text (CODEC_PANIC_MARKER); never used by `make run` or a deployment")
    args = parser.parse_args()
    state = os.path.abspath(args.state)

    if args.command == "down":
        stop(state)
        print(f"local stack: stopped ({state})")
    elif args.command == "key":
        if not args.tenant:
            fail("name the key's tenant with --tenant (make key TENANT=<name>)")
        print(create_key(state, os.path.abspath(args.bin_dir), args.tenant), end="")
    elif args.command == "env":
        port = read(os.path.join(state, "port"))
        if not port:
            fail("no stack is running; start it with `make up`")
        for key, value in emulator_env(int(port)).items():
            if key.startswith("AWS_"):
                print(f"export {key}={value}")
    else:
        started = time.time()
        allow_hosts = args.allow_hosts
        if allow_hosts is None:
            allow_hosts = f"127.0.0.1:{args.port + 1},127.0.0.1:{args.port + 2}"
        fresh = start_emulator(state, args.port, allow_hosts, args.codec_panic_marker)
        if args.watch_pid:
            watch(state, args.watch_pid)
        outputs = deploy(state, args.port, os.path.abspath(args.bin_dir), schedule=not args.no_schedule)
        verb = "started and deployed" if fresh else "redeployed"
        print(f"local stack: {verb} in {time.time() - started:.1f} s; API at {outputs['ApiUrl']}")
        if args.key_for:
            printed = create_key(state, os.path.abspath(args.bin_dir), args.key_for)
            key_file = os.path.join(state, "api_key")
            with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(printed.strip().splitlines()[-1] + "\n")
            print(f"local stack: {printed.strip()}\n  (kept in {os.path.relpath(key_file, ROOT)} for `make run`; "
                  f"`make key TENANT=<name>` makes one for another tenant)")


if __name__ == "__main__":
    main()
