"""podman for the container test: the machine prepared by scripts/containers.sh, the image
built from the repository's Dockerfile, and deploy/compose.yaml's app services run with
`podman run` exactly as the file describes them (command, environment, env file, read-only
root, tmpfs, volumes, health checks, start order by `depends_on` conditions).

What differs from `docker compose up`, and why:
- Host networking (no bridge network or registry here; containers talk only over
  loopback). Container ports are then host ports, so the compose file's fixed ports (3000,
  4000, 8000) become free ones wherever they appear (command, environment, health check),
  0.0.0.0 becomes 127.0.0.1 (nothing listens beyond loopback) and a service's name as a
  host becomes 127.0.0.1.
- The `postgres` service is replaced by the machine's PostgreSQL (fresh databases, given
  as DATABASE_URL / DAGSTER_PG_URL overrides, as a compose override file would).
- Health checks run when asked (`podman healthcheck run`): podman 4.3 schedules them with
  systemd timers, and these machines run no systemd.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.deploy_support import REPO

COMPOSE = REPO / "deploy" / "compose.yaml"
PORTS = ("3000", "4000", "8000")  # the compose file's fixed ports
STOP_SECONDS = 30  # podman stop's grace period before SIGKILL (exit code 137)


def prepare_machine() -> dict[str, str]:
    """Run scripts/containers.sh (installs podman & co. if missing, makes the base image)
    and return the environment it prints (CONTAINERS_CONF, ..., GLISK_BASE_IMAGE)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "containers.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"scripts/containers.sh failed:\n{done.stderr[-4000:]}"
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {**os.environ, **found}


def podman(env: Mapping[str, str], *args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=dict(env), timeout=timeout
    )
    if check:
        assert done.returncode == 0, f"podman {' '.join(args[:3])}: {done.stderr[-3000:]}"
    return done.stdout


def context_key(env: Mapping[str, str]) -> str:
    """A hash of everything the build reads: the Dockerfile, the files .dockerignore lets
    into the context, and the base image."""
    digest = hashlib.sha256(env["GLISK_BASE_IMAGE"].encode())
    files = ["Dockerfile", "pyproject.toml", "uv.lock", "deploy/workspace.yaml", "dagster.yaml"]
    for package in ("glisk_pipeline", "webhook_service"):
        files += sorted(
            str(p.relative_to(REPO))
            for p in (REPO / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
    for name in files:
        digest.update(name.encode() + b"\0" + (REPO / name).read_bytes())
    return digest.hexdigest()[:16]


def build_image(env: Mapping[str, str], repository: str) -> str:
    """The repository's Dockerfile, on the local base; returns the image's tag. An image
    built from the same inputs is reused (tagged by context_key); otherwise podman builds,
    reusing its cached layers (the storage of scripts/podman/storage.conf) where the inputs
    of a layer did not change. The build stage is tagged too, so that pruning what earlier
    builds left (vfs keeps a full copy of the file system per layer: ~9 GB a build) keeps
    the dependency layers."""
    tag = f"{repository}:ctx-{context_key(env)}"
    exists = subprocess.run(["podman", "image", "exists", tag], env=dict(env), check=False)
    if exists.returncode == 0:
        return tag
    for target, name in (("build", f"{repository}:build-stage"), ("runtime", tag)):
        podman(
            env,
            "build",
            "--format", "docker",
            "--network", "host",
            "--layers",
            "--build-arg", f"BASE_IMAGE={env['GLISK_BASE_IMAGE']}",
            "--target", target,
            "-t", name,
            str(REPO),
            timeout=1800,
        )  # fmt: skip
    listed = podman(env, "images", "--format", "{{.Repository}}:{{.Tag}}", repository)
    old = [t for t in listed.split() if ":ctx-" in t and t != tag]
    if old:
        podman(env, "rmi", *old, check=False)
    podman(env, "image", "prune", "--force", timeout=600)
    return tag


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (the forms compose.yaml uses)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match[1], match[2], match[3]
        if variables.get(name):
            return variables[name]
        assert op != ":?", f"compose: {name} unset: {arg}"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


@dataclass
class Service:
    """One compose service as podman runs it here."""

    name: str
    spec: dict[str, Any]
    command: list[str]
    environment: dict[str, str]
    healthcheck: list[str] | None


@dataclass
class Stack:
    """The compose file's app services, started in dependency order, stopped on exit."""

    env: Mapping[str, str]  # podman's environment (CONTAINERS_CONF, ...)
    image: str
    variables: dict[str, str]  # what compose interpolates (deploy/.env's variables)
    env_file: Path
    overrides: dict[str, str]  # environment set in every app service (the databases)
    ports: dict[str, str] = field(default_factory=dict)  # compose port -> free host port
    prefix: str = field(default_factory=lambda: f"glisk-test-{uuid.uuid4().hex[:8]}")
    started: list[str] = field(default_factory=list)  # container names, in start order
    exit_codes: dict[str, int] = field(default_factory=dict)

    def services(self) -> dict[str, Service]:
        doc = yaml.safe_load(COMPOSE.read_text())
        names = set(doc["services"])
        out = {}
        for name, spec in doc["services"].items():
            if name == "postgres":
                continue  # the machine's PostgreSQL
            env = {
                key: "127.0.0.1" if value in names else self._local(value)
                for key, value in (
                    (k, interpolate(str(v), self.variables))
                    for k, v in (spec.get("environment") or {}).items()
                )
            }
            test = (spec.get("healthcheck") or {}).get("test")
            out[name] = Service(
                name,
                spec,
                [self._local(a) for a in spec["command"]],
                {**env, **self.overrides},
                [self._local(a) for a in test] if test else None,
            )
        return out

    def _local(self, value: str) -> str:
        """A value with the compose network's addresses replaced by host networking's
        (a service's name as a host is replaced in the environment, by services())."""
        value = value.replace("0.0.0.0", "127.0.0.1")
        for port, free in self.ports.items():
            value = re.sub(rf"(?<![\d.]){port}(?!\d)", free, value)
        return value

    def container(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def run(self, service: Service) -> str:
        spec, name = service.spec, self.container(service.name)
        args = ["run", "--detach", "--name", name, "--network", "host"]
        args += ["--env-file", str(self.env_file)]
        for key, value in service.environment.items():
            args += ["--env", f"{key}={value}"]
        if spec.get("read_only"):
            args.append("--read-only")
        for path in spec.get("tmpfs") or []:
            args += ["--tmpfs", path]
        for volume in spec.get("volumes") or []:
            source, target = volume.split(":", 1)
            args += ["--volume", f"{self.prefix}-{source}:{target}"]
        if service.healthcheck:
            # the compose test as is; run on demand (no systemd timers here)
            # podman 4.3 takes no JSON array here: compose's ["CMD", ...] as one command
            # line (run by /bin/sh -c, which the image has)
            assert service.healthcheck[0] == "CMD", service.healthcheck
            args += ["--health-cmd", shlex.join(service.healthcheck[1:])]
            args += ["--health-interval", "disable"]
        podman(self.env, *args, self.image, *service.command)
        self.started.append(name)
        return name

    def healthy(self, service: str) -> bool:
        done = subprocess.run(
            ["podman", "healthcheck", "run", self.container(service)],
            capture_output=True,
            text=True,
            env=dict(self.env),
            timeout=60,
        )
        return done.returncode == 0

    def state(self, service: str) -> dict[str, Any]:
        out = podman(self.env, "inspect", "--type", "container", self.container(service))
        return json.loads(out)[0]

    def logs(self, service: str, chars: int = 3000) -> str:
        done = subprocess.run(
            ["podman", "logs", self.container(service)],
            capture_output=True,
            text=True,
            env=dict(self.env),
            timeout=60,
        )
        return f"--- {service} ---\n" + (done.stdout + done.stderr)[-chars:]

    def wait_for(self, service: str, condition: str, timeout: float) -> None:
        """A `depends_on` condition of compose: service_healthy or
        service_completed_successfully."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(service)["State"]
            if condition == "service_completed_successfully":
                if not state["Running"] and state["Status"] == "exited":
                    assert state["ExitCode"] == 0, self.logs(service)
                    return
            else:
                assert state["Running"], f"{service} exited:\n{self.logs(service)}"
                if self.healthy(service):
                    return
            assert time.monotonic() < deadline, f"{service}: not {condition}\n{self.logs(service)}"
            time.sleep(1)

    def up(self, timeout: float = 240) -> dict[str, Service]:
        """Start every app service once its `depends_on` conditions hold."""
        services = self.services()
        pending = dict(services)
        while pending:
            started = self.started_services() | {"postgres"}
            ready = [s for s in pending.values() if set(s.spec.get("depends_on", {})) <= started]
            assert ready, f"no service can start: {sorted(pending)}"
            for service in ready:
                for dep, how in service.spec.get("depends_on", {}).items():
                    if dep != "postgres":
                        self.wait_for(dep, how["condition"], timeout)
                self.run(service)
                del pending[service.name]
        return services

    def started_services(self) -> set[str]:
        return {name.removeprefix(f"{self.prefix}-") for name in self.started}

    def stop(self) -> dict[str, int]:
        """`podman stop` (SIGTERM, SIGKILL after STOP_SECONDS) in reverse start order;
        returns each container's exit code (137 = it needed the SIGKILL)."""
        for name in reversed(self.started):
            podman(self.env, "stop", "--time", str(STOP_SECONDS), name, timeout=120)
            service = name.removeprefix(f"{self.prefix}-")
            self.exit_codes[service] = self.state(service)["State"]["ExitCode"]
        return self.exit_codes

    def remove(self) -> None:
        """Containers and volumes, whatever state they are in."""
        for name in reversed(self.started):
            podman(self.env, "rm", "--force", "--time", "5", name, timeout=120, check=False)
        for volume in podman(self.env, "volume", "ls", "--quiet").split():
            if volume.startswith(self.prefix):
                podman(self.env, "volume", "rm", "--force", volume, check=False)


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[dict[str, Service]]:
    """The stack up; on an error, every container's log tail is printed; always removed."""
    try:
        yield stack.up()
    except BaseException:
        for service in stack.started_services():
            print(stack.logs(service))
        raise
    finally:
        stack.remove()
