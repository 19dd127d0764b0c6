#!/usr/bin/env python3
"""Checks the container files without a container engine.

  deploy/container/check.py [--root REPOSITORY]

- compose.yaml parses as YAML, its services, networks and volumes refer to
  each other correctly, and the AI workers can be scaled (no fixed name, no
  host port);
- every ${VARIABLE} it uses and every setting it passes is documented
  (`NAME=` in .env.sample, or `NAME` in backquotes in the README);
- the Containerfile builds with the README's build command, installs the
  Debian packages scripts/bootstrap.sh installs, and copies files that exist;
- each health check probes the port its program serves by default, and a
  service of another image (PostgreSQL) has a health check of its own;
- every address a service is given names a service that runs with it (its
  profiles start it) on a network both join;
- the `postgres` profile runs PostgreSQL, two or more stores on it (password
  from a file), edges and stores that list every store, workers for each
  store, and edges that can be scaled (a host port range, %H in EDGE_ID).

Prints one line per problem and exits 1 if there is any.
"""
import argparse
import os
import re
import sys

import yaml

PROGRAM_PORTS = {"udpchat-keys": 9101, "udpchat-store": 9102, "udpchat-edge": 9103, "udpchat-ai": 9104, "udpchat-web": 9110}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    root = parser.parse_args().root
    problems = []

    def read(path):
        with open(os.path.join(root, path), encoding="utf-8") as handle:
            return handle.read()

    sample = read(".env.sample")
    readme = read("README.md")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", sample, re.MULTILINE))
    documented |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", readme))

    # --- compose.yaml -----------------------------------------------------
    text = read("deploy/container/compose.yaml")
    try:
        compose = yaml.safe_load(text)
    except yaml.YAMLError as error:
        print(f"compose.yaml does not parse: {error}")
        return 1
    if not isinstance(compose, dict):
        print("compose.yaml: not a mapping")
        return 1

    allowed_top = {"name", "services", "networks", "volumes", "configs", "secrets"}
    for key in compose:
        if key not in allowed_top and not str(key).startswith("x-"):
            problems.append(f"compose.yaml: unknown top-level key '{key}'")

    for variable in sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))):
        if variable not in documented:
            problems.append(f"compose.yaml uses ${{{variable}}}, which neither .env.sample nor the README documents")

    services = compose.get("services") or {}
    networks = set((compose.get("networks") or {}).keys())
    volumes = set((compose.get("volumes") or {}).keys())
    for required in ("keys", "store", "edge", "ai"):
        if required not in services:
            problems.append(f"compose.yaml: no '{required}' service")

    built = False
    for name, service in services.items():
        where = f"compose.yaml: service '{name}'"
        if not isinstance(service, dict):
            problems.append(f"{where} is not a mapping")
            continue
        if "image" not in service and "build" not in service:
            problems.append(f"{where} has neither image nor build")
        if "build" in service:
            built = True
            build = service["build"]
            context = os.path.normpath(os.path.join(root, "deploy/container", build.get("context", ".")))
            dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
            if not os.path.isfile(dockerfile):
                problems.append(f"{where} builds from {dockerfile}, which does not exist")
        for network in service.get("networks") or []:
            if network not in networks:
                problems.append(f"{where} joins undeclared network '{network}'")
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source")
            if source and not source.startswith((".", "/")) and source not in volumes:
                problems.append(f"{where} mounts undeclared volume '{source}'")
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problems.append(f"{where} depends on unknown service '{dependency}'")
            elif not set(profiles(services[dependency])) <= set(profiles(service)):
                problems.append(f"{where} depends on '{dependency}', which its profiles do not start")
        health = service.get("healthcheck") or {}
        test = health.get("test")
        one_shot = service.get("restart") == "no"  # a set-up step (plane-keys): it serves nothing to check
        if not ours(service):
            # Another project's image (PostgreSQL): its settings are its
            # own, but it must say when it is ready.
            if not one_shot and (not isinstance(test, list) or len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL")):
                problems.append(f"{where} needs a healthcheck test, which the services that wait for it use")
            continue
        command = service.get("command")
        if not isinstance(command, list) or not command:
            problems.append(f"{where} needs a command list naming the program")
            continue
        program = command[0]
        if program not in PROGRAM_PORTS:
            # A set-up step may be a shell script (postgres-secret); nothing else.
            if not (one_shot and program == "sh"):
                problems.append(f"{where} runs '{program}', not a udpchat program")
            continue
        for setting in environment_of(service):
            if setting not in documented:
                problems.append(f"{where} sets {setting}, which is not a documented setting")
        if one_shot:
            pass
        elif not isinstance(test, list) or len(test) < 3 or test[:2] != ["CMD", "udpchat-healthcheck"]:
            problems.append(f"{where} needs healthcheck test [CMD, udpchat-healthcheck, PORT]")
        elif str(test[2]) != str(PROGRAM_PORTS[program]):
            problems.append(f"{where} checks port {test[2]}, but {program} serves health on {PROGRAM_PORTS[program]}")
        if program == "udpchat-ai":
            if "container_name" in service:
                problems.append(f"{where} has a container_name, so --scale cannot run more than one")
            if service.get("ports"):
                problems.append(f"{where} publishes host ports, so --scale would collide")
        if program == "udpchat-edge" and not any(str(port).endswith("/udp") for port in service.get("ports") or []):
            problems.append(f"{where} publishes no UDP port")
        # Each address it is given names a service that runs with it, on a
        # network both join.
        for setting, value in environment_of(service).items():
            for host in addressed_hosts(setting, value):
                if host in ("0.0.0.0", "127.0.0.1", "localhost", "host.docker.internal") or "$" in host:
                    continue
                if host not in services:
                    problems.append(f"{where}: {setting} names '{host}', which is no service")
                elif not set(profiles(services[host])) <= set(profiles(service)):
                    problems.append(f"{where}: {setting} names '{host}', which its profiles do not start")
                elif not set(service.get("networks") or []) & set(services[host].get("networks") or []):
                    problems.append(f"{where}: {setting} names '{host}', which shares no network with it")

    problems += check_postgres_profile(services)

    if not built:
        problems.append("compose.yaml: no service builds the image")

    # --- Containerfile ----------------------------------------------------
    containerfile = read("deploy/container/Containerfile")
    readme_builds = set(re.findall(r"^(swift build -c release[^\n#]*?)\s*$", readme, re.MULTILINE))
    image_builds = set(m.strip() for m in re.findall(r"^RUN (swift build -c release[^\n\\]*)$", containerfile, re.MULTILINE))
    install_builds = set(m.strip() for m in re.findall(r"^\s*(swift build -c release.*)$", read("deploy/install.sh"), re.MULTILINE))
    if not readme_builds:
        problems.append("README.md shows no release build command (a line 'swift build -c release ...')")
    if not image_builds:
        problems.append("Containerfile: no 'RUN swift build -c release ...' step")
    elif image_builds != readme_builds:
        problems.append(f"Containerfile builds with {sorted(image_builds)}, the README with {sorted(readme_builds)}")
    if install_builds and install_builds != readme_builds:
        problems.append(f"deploy/install.sh builds with {sorted(install_builds)}, the README with {sorted(readme_builds)}")

    bootstrap = read("scripts/bootstrap.sh")
    wanted = re.search(r"for package in ([^;]+);", bootstrap)
    build_stage = containerfile.split("\nFROM ", 2)[1] if containerfile.count("\nFROM ") >= 2 else containerfile
    if wanted:
        for package in wanted.group(1).split():
            if package not in build_stage:
                problems.append(f"Containerfile's build stage does not install {package} (scripts/bootstrap.sh does)")
    for source in re.findall(r"^COPY (?!--from)(\S+)", containerfile, re.MULTILINE):
        if not os.path.exists(os.path.join(root, source)):
            problems.append(f"Containerfile copies {source}, which does not exist")

    for problem in problems:
        print(problem)
    if not problems:
        print(f"ok: compose.yaml ({len(services)} services) and Containerfile")
    return 1 if problems else 0


def profiles(service):
    return service.get("profiles") or [] if isinstance(service, dict) else []


def ours(service):
    """Whether a service runs the udpchat image."""
    return "build" in service or "UDPCHAT_IMAGE" in str(service.get("image", ""))


def environment_of(service):
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return environment


def addressed_hosts(setting, value):
    """The hosts a setting's value connects to (tcp:// endpoints, lists of
    them, and the PostgreSQL URL)."""
    if value is None or not (setting.endswith("_ENDPOINT") or setting == "DATABASE_URL"):
        return []
    return re.findall(r"^(?:tcp|postgres|postgresql)://(?:[^@/,]*@)?([^:/,]+)", str(value).replace(",", "\n"), re.MULTILINE)


def check_postgres_profile(services):
    """The `postgres` profile: PostgreSQL, two or more stores on it, every
    edge subscribed to every store, each store with its own AI workers, and
    edges that can be scaled."""
    problems = []
    member = {name: service for name, service in services.items() if isinstance(service, dict) and "postgres" in profiles(service)}
    if not member:
        return ["compose.yaml: no service has the profile 'postgres'"]

    def program(service):
        command = service.get("command")
        return command[0] if isinstance(command, list) and command else None

    databases = [name for name, service in member.items() if not ours(service) and "postgres" in str(service.get("image", ""))]
    if not databases:
        problems.append("compose.yaml: the postgres profile runs no PostgreSQL image")
    stores = sorted(name for name, service in member.items() if program(service) == "udpchat-store")
    if len(stores) < 2:
        problems.append(f"compose.yaml: the postgres profile runs {len(stores)} store(s), not two or more")
    for name in stores:
        environment = environment_of(member[name])
        url = str(environment.get("DATABASE_URL") or "")
        if not any(host in databases for host in addressed_hosts("DATABASE_URL", url)):
            problems.append(f"compose.yaml: store '{name}' has no DATABASE_URL naming the profile's PostgreSQL service")
        if not environment.get("DATABASE_PASSWORD_FILE"):
            problems.append(f"compose.yaml: store '{name}' has no DATABASE_PASSWORD_FILE")
        for setting in ("STORE_BIND", "EVENTS_BIND", "JOBS_BIND"):
            if not environment.get(setting):
                problems.append(f"compose.yaml: store '{name}' has no {setting} of its own")
    # The password: one file, made by the profile's set-up step for the
    # stores' user, where PostgreSQL and every store read it.
    secret_files = {str(environment_of(member[name]).get("DATABASE_PASSWORD_FILE") or "") for name in stores}
    for name in databases:
        wanted = str(environment_of(member[name]).get("POSTGRES_PASSWORD_FILE") or "")
        if secret_files and wanted not in secret_files:
            problems.append(f"compose.yaml: '{name}' reads its password from {wanted or 'nowhere'}, the stores from {sorted(secret_files)}")
    for name in stores + databases:
        service = member[name]
        path = str(environment_of(service).get("DATABASE_PASSWORD_FILE") or environment_of(service).get("POSTGRES_PASSWORD_FILE") or "")
        mounted = [m.split(":")[1] for m in service.get("volumes") or [] if isinstance(m, str) and m.count(":") >= 1]
        if path and not any(path.startswith(target.rstrip("/") + "/") for target in mounted):
            problems.append(f"compose.yaml: '{name}' reads {path}, which no volume of it holds")
    store_users = {str(member[name].get("user", "")).split(":")[0] for name in stores}
    makers = [service for service in member.values() if service.get("restart") == "no" and "chown" in str(service.get("command"))]
    for maker in makers:
        owners = set(re.findall(r"chown (\d+):", str(maker.get("command"))))
        if owners and not owners <= store_users:
            problems.append(f"compose.yaml: the password file is given to uid {sorted(owners)}, the stores run as {sorted(store_users)}")

    every = set(stores)
    for name, service in member.items():
        if program(service) in ("udpchat-edge", "udpchat-store"):
            environment = environment_of(service)
            for setting in ("STORE_ENDPOINT", "EVENTS_ENDPOINT"):
                named = set(addressed_hosts(setting, environment.get(setting)))
                if named != every:
                    problems.append(
                        f"compose.yaml: '{name}' has {setting} naming {sorted(named)}, not every store of the profile {sorted(every)}")
    edges = [name for name, service in member.items() if program(service) == "udpchat-edge"]
    if not edges:
        problems.append("compose.yaml: the postgres profile runs no edge")
    for name in edges:
        service = member[name]
        if "%H" not in str(environment_of(service).get("EDGE_ID") or ""):
            problems.append(f"compose.yaml: edge '{name}' needs an EDGE_ID with %H, so each replica of --scale has a name of its own")
        if "container_name" in service:
            problems.append(f"compose.yaml: edge '{name}' has a container_name, so --scale cannot run more than one")
        for port in service.get("ports") or []:
            # ${VARIABLE:-DEFAULT} read as its default
            published = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", str(port)).rsplit(":", 1)[0]
            if "-" not in published:
                problems.append(f"compose.yaml: edge '{name}' publishes {port}: one host port, which a second replica cannot take (give a range)")
    workers = {}
    for name, service in member.items():
        if program(service) == "udpchat-ai":
            for host in addressed_hosts("JOBS_ENDPOINT", environment_of(service).get("JOBS_ENDPOINT")):
                workers.setdefault(host, []).append(name)
    for name in stores:
        if name not in workers:
            problems.append(f"compose.yaml: no AI worker of the postgres profile takes jobs from store '{name}'")
    return problems


if __name__ == "__main__":
    sys.exit(main())
