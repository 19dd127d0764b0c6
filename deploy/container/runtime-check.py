#!/usr/bin/env python3
"""Runs the container image's runtime stage without a container engine.

  swift build -c release --static-swift-stdlib
  sudo deploy/container/runtime-check.py [--bin-dir DIR] [--keep]

DIR (default .build/release) holds programs built as the image builds
them, with the Swift runtime linked in. The script makes the runtime
stage's base (Debian bookworm, minbase: what debian:bookworm-slim is built
from) with debootstrap, replays the
Containerfile's last stage in it (each RUN in a chroot, the programs from
DIR where it copies the build stage's, ENV, USER, WORKDIR), then starts
keys, store, edge and one AI worker as compose.yaml describes them (their
commands, users and environment, with the service names resolved to
127.0.0.1 and every port moved up by 20000 so nothing here collides), waits
for each health check, chats through the edge, and stops them with SIGTERM,
expecting exit status 0. Each program runs in the chroot as its compose
user, so it sees only the image's files and libraries.

What it does not show: the build stage (the Swift image), Docker's
networking, volumes and `--scale`. Needs root, network access to
deb.debian.org (or DEBIAN_MIRROR), and PyYAML. Exits 0 when every check
passes.
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OFFSET = 20000
PORT_SETTINGS = {"SERVER_PORT", "KEYS_METRICS_PORT", "STORE_METRICS_PORT", "EDGE_METRICS_PORT", "AI_METRICS_PORT"}
DEFAULT_PORTS = {"udpchat-keys": 9101, "udpchat-store": 9102, "udpchat-edge": 9103, "udpchat-ai": 9104}


def say(text):
    print(f"[runtime-check] {text}", flush=True)


def instructions(containerfile):
    """The last stage's instructions, continuation lines joined: (keyword, text)."""
    lines, current = [], ""
    for raw in containerfile.splitlines():
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    result = []
    for line in lines[stages[-1]:]:
        keyword, _, text = line.partition(" ")
        result.append((keyword.upper(), text.strip()))
    return result


def interpolate(value):
    """compose's ${VAR:-default} and ${VAR}, with the defaults (or the environment)."""
    def replace(match):
        name, default = match.group(1), match.group(3) or ""
        return os.environ.get(name) or default
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}", replace, str(value))


def moved(value):
    """Service names to 127.0.0.1 and known ports up by OFFSET, in an endpoint."""
    value = re.sub(r"tcp://(keys|store|edge)(?=:)", "tcp://127.0.0.1", value)
    return re.sub(r":(7\d{3})\b", lambda m: f":{int(m.group(1)) + OFFSET}", value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default=os.path.join(REPO, ".build", "release"))
    parser.add_argument("--keep", action="store_true", help="keep the root file system (its path is printed)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("run as root")
        return 1
    bin_dir = os.path.abspath(args.bin_dir)
    linked = subprocess.run(["ldd", os.path.join(bin_dir, "udpchat-edge")], capture_output=True, text=True)
    if linked.returncode != 0 or "libswiftCore" in linked.stdout:
        say(f"{bin_dir} does not hold programs with the Swift runtime linked in, as the image has them: "
            "build with `swift build -c release --static-swift-stdlib` first")
        return 1
    if shutil.which("debootstrap") is None:
        say("installing debootstrap")
        subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))

    containerfile = open(os.path.join(REPO, "deploy/container/Containerfile"), encoding="utf-8").read()
    compose = yaml.safe_load(open(os.path.join(REPO, "deploy/container/compose.yaml"), encoding="utf-8"))
    runtime = re.search(r"^ARG RUNTIME_IMAGE=debian:(\w+)-slim$", containerfile, re.MULTILINE)
    if not runtime:
        say("the Containerfile's RUNTIME_IMAGE is not debian:SUITE-slim; nothing to compare with")
        return 1
    suite = runtime.group(1)

    work = tempfile.mkdtemp(prefix="udpchat-runtime-")
    root = os.path.join(work, "root")
    processes = {}
    failures = []

    def check(name, ok, detail=""):
        say(("ok: " if ok else "FAILED: ") + name + (f" ({detail})" if detail and not ok else ""))
        if not ok:
            failures.append(name)
        return ok

    def chroot(command, **kwargs):
        return subprocess.run(["chroot", root, "/bin/sh", "-c", command], **kwargs)

    try:
        mirror = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
        say(f"debootstrap --variant=minbase {suite} (the base of debian:{suite}-slim)")
        subprocess.run(["debootstrap", "--variant=minbase", suite, root, mirror], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
        with open(os.path.join(root, "etc/hosts"), "w") as hosts:  # what a container runtime provides
            hosts.write("127.0.0.1 localhost\n::1 localhost\n")

        env, user, workdir, cmd = {}, "root", "/", []
        for keyword, text in instructions(containerfile)[1:]:
            if keyword == "RUN":
                say(f"RUN {text[:90]}{'...' if len(text) > 90 else ''}")
                ran = chroot(text, capture_output=True, text=True)
                if ran.returncode != 0:
                    check(f"RUN {text[:60]}", False, (ran.stdout + ran.stderr)[-800:])
                    return 1
            elif keyword == "COPY" and text.startswith("--from=build"):
                target = os.path.join(root, text.split()[-1].lstrip("/"))
                for program in ("udpchat-keys", "udpchat-store", "udpchat-edge", "udpchat-ai", "udpchat"):
                    subprocess.run(["install", "-m", "0755", "-s", os.path.join(bin_dir, program), target], check=True)
            elif keyword == "COPY":
                source, target = text.split()
                shutil.copy(os.path.join(REPO, source), os.path.join(root, target.lstrip("/")))
            elif keyword == "ENV":
                for item in shlex.split(text):
                    name, _, value = item.partition("=")
                    env[name] = value
            elif keyword == "USER":
                user = text
            elif keyword == "WORKDIR":
                workdir = text
            elif keyword == "CMD":
                cmd = yaml.safe_load(text)
        missing = chroot("for p in /usr/local/bin/udpchat*; do ldd $p | grep 'not found'; done", capture_output=True, text=True)
        check("every library the programs link is in the image", missing.stdout.strip() == "", missing.stdout.strip())
        check("the image's default command is a program", cmd and cmd[0] in DEFAULT_PORTS, str(cmd))

        os.makedirs(os.path.join(root, "proc"), exist_ok=True)
        subprocess.run(["mount", "-t", "proc", "proc", os.path.join(root, "proc")], check=True)

        def start(name):
            service = compose["services"][name]
            environment = dict(env)
            for key, value in (service.get("environment") or {}).items():
                value = interpolate(value)
                if key.endswith(("_ENDPOINT", "_BIND")):
                    value = moved(value)
                environment[key] = value
            program = service["command"][0]
            metrics = DEFAULT_PORTS[program] + OFFSET
            environment.update({"KEYS_METRICS_PORT": str(DEFAULT_PORTS["udpchat-keys"] + OFFSET),
                                "STORE_METRICS_PORT": str(DEFAULT_PORTS["udpchat-store"] + OFFSET),
                                "EDGE_METRICS_PORT": str(DEFAULT_PORTS["udpchat-edge"] + OFFSET),
                                "AI_METRICS_PORT": str(DEFAULT_PORTS["udpchat-ai"] + OFFSET)})
            if "SERVER_PORT" in environment:
                environment["SERVER_PORT"] = str(int(environment["SERVER_PORT"]) + OFFSET)
            uid, _, gid = str(service.get("user", user)).partition(":")
            assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items() if v != "")
            command = " ".join(shlex.quote(part) for part in service["command"])
            line = (f"exec setpriv --reuid={uid} --regid={gid or uid} --clear-groups "
                    f"env -i PATH=/usr/local/bin:/usr/bin:/bin {assignments} "
                    f"sh -c {shlex.quote(f'cd {workdir} && exec {command}')}")
            log = open(os.path.join(work, f"{name}.log"), "w")
            processes[name] = (subprocess.Popen(["chroot", root, "/bin/sh", "-c", line], stdout=log, stderr=subprocess.STDOUT), log)
            test = service["healthcheck"]["test"]
            probe = " ".join(shlex.quote(str(part)) for part in test[1:-1]) + f" {int(test[-1]) + OFFSET}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if processes[name][0].poll() is not None:
                    break
                if chroot(probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                    return check(f"{name} ({program}) passes its health check as uid {uid}", True)
                time.sleep(0.5)
            log.flush()
            return check(f"{name} ({program}) passes its health check as uid {uid}", False,
                         open(os.path.join(work, f"{name}.log")).read()[-800:])

        for name in ("keys", "store", "edge", "ai"):
            if not start(name):
                return 1
        keys_dir = os.path.join(root, env.get("KEYS_DIR", "var/lib/udpchat/keys").lstrip("/"))
        key = os.stat(os.path.join(keys_dir, "server_private_key.pem"))
        check("the key was generated on first start, mode 0600, owned by the keys user",
              oct(key.st_mode & 0o777) == "0o600" and key.st_uid == int(str(compose["services"]["keys"]["user"]).split(":")[0]))

        port = int(interpolate(compose["services"]["edge"]["environment"]["SERVER_PORT"])) + OFFSET
        client = os.path.join(bin_dir, "udpchat")
        base = ["--server", f"127.0.0.1:{port}", "--known-hosts", os.path.join(work, "known_hosts"), "--email", "image@example.com"]
        sent = subprocess.run([client, "send", *base, "--room", "Image", "--create", "from the runtime stage"],
                              capture_output=True, text=True, timeout=30)
        check("a client chats through the edge", sent.returncode == 0, sent.stdout + sent.stderr)
        history = subprocess.run([client, "history", *base, "--room", "Image"], capture_output=True, text=True, timeout=30)
        check("and reads it back", "from the runtime stage" in history.stdout, history.stdout + history.stderr)

        for name in ("edge", "ai", "store", "keys"):
            process, _ = processes[name]
            # SIGTERM to the program itself (chroot and setpriv exec into it).
            process.send_signal(signal.SIGTERM)
            try:
                status = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                status = "none within 30 s"
            check(f"{name} exits 0 on SIGTERM", status == 0, f"status {status}")
    finally:
        for process, log in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        proc = os.path.join(root, "proc")
        if os.path.ismount(proc):
            subprocess.run(["umount", proc])
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        say(f"{len(failures)} check(s) failed")
        return 1
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
