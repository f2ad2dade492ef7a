"""What an SFTP upload may not touch (SPEC §12 "Uploads never change what runs"): the pure rules."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault_proxy.ssh.paths import PathRefused, check_path, normalised
from vault_proxy.ssh.upload_rules import (
    check_upload_dir,
    check_upload_mode,
    check_upload_path,
    temp_name,
    uploads_allowed,
)

HOMES = ["/srv/deploy"]


def test_a_command_allowlist_without_allowed_paths_means_no_uploads():
    assert uploads_allowed([], [])
    assert uploads_allowed([], ["/srv/drop"])
    assert uploads_allowed(["uptime"], ["/srv/drop"])
    assert not uploads_allowed(["uptime"], [])


@pytest.mark.parametrize(
    "path",
    ["/home/u/.bashrc", "/home/u/.profile", "/home/u/.bash_profile", "/home/u/.bash_login", "/home/u/.bash_logout",
     "/home/u/.zshrc", "/home/u/.zshenv", "/home/u/.zprofile", "/home/u/.zlogin", "/home/u/.cshrc",
     "/home/u/.tcshrc", "/home/u/.kshrc", "/home/u/.inputrc", "/home/u/.pam_environment", "/home/u/.forward",
     "/home/u/.config/systemd/user/x.service", "/home/u/.local/bin/ls", "/home/u/.gnupg/gpg.conf",
     "/srv/app/.git/hooks/post-merge", "/srv/app/.git/config", "/srv/app/.envrc", "/var/lib/postgresql/.psqlrc",
     "/tmp/.hidden", "/tmp/.x/y"],
)  # fmt: skip
def test_dot_names_are_refused_anywhere(path):
    with pytest.raises(PathRefused, match="dot-files and dot-directories"):
        check_upload_path(path, [], HOMES)


def test_ssh_keeps_its_own_message():
    with pytest.raises(PathRefused, match=r"inside a \.ssh directory"):
        check_upload_path("/home/u/.ssh/authorized_keys", [], HOMES)


@pytest.mark.parametrize("path", ["/run/systemd/system/x.service", "/var/run/x", "/var/spool/cron/crontabs/u",
                                  "/var/spool/at/x", "/etc/profile.d/x.sh", "/usr/local/bin/x", "/root/x"])  # fmt: skip
def test_system_locations(path):
    with pytest.raises(PathRefused, match="system location"):
        check_upload_path(path, [], HOMES)


@pytest.mark.parametrize("path", ["/srv/deploy/bin/ls", "/home/alice/bin/ls", "/home/alice/bin/sub/x"])
def test_bin_directly_in_a_home(path):
    with pytest.raises(PathRefused, match="on the login PATH"):
        check_upload_path(path, [], HOMES)


@pytest.mark.parametrize("path", ["/srv/deploy/releases/v1.tar", "/srv/deploy/binaries/x", "/opt/app/bin/server",
                                  "/home/alice/project/bin/run", "/tmp/x.txt", "/home/alice/notes", "/srv/app/env"])  # fmt: skip
def test_ordinary_paths_pass(path):
    assert check_upload_path(path, [], HOMES) == path


def test_allowed_paths_still_apply():
    assert check_upload_path("/srv/drop/x", ["/srv/drop"], HOMES) == "/srv/drop/x"
    with pytest.raises(PathRefused, match="ssh_allowed_paths"):
        check_upload_path("/srv/other/x", ["/srv/drop"], HOMES)
    with pytest.raises(PathRefused, match="dot-files"):
        check_upload_path("/srv/drop/.bashrc", ["/srv/drop"], HOMES)


def test_a_directory_on_the_way_is_checked_without_allowed_paths():
    """Ancestors of an allowed directory (``/srv``) are outside it, and must still pass."""
    assert check_upload_dir("/srv", HOMES) == "/srv"
    assert check_upload_dir("/", HOMES) == "/"
    with pytest.raises(PathRefused):
        check_upload_dir("/home/u/.config", HOMES)


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o6711, 0o4000])
def test_set_id_modes_refused(mode):
    with pytest.raises(PathRefused, match="setuid or setgid"):
        check_upload_mode(mode)


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o755, 0o1777, 0o777, 0])
def test_other_modes_pass(mode):
    assert check_upload_mode(mode) == mode


def test_temp_name_is_a_fixed_length_dot_name():
    name = temp_name("ab" * 16)
    assert name.startswith(".vault-proxy-upload-") and "/" not in name and len(name) < 64


SEGMENT = st.text(alphabet="abcxyz._-", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))


@given(st.lists(SEGMENT, min_size=1, max_size=6), st.integers(min_value=0, max_value=5))
def test_property_any_dot_component_is_refused(parts, where):
    """Whatever the spelling (``..`` collapsed first), a path with a dot component after normalising is refused."""
    parts = list(parts)
    parts.insert(min(where, len(parts)), ".x")
    path = normalised("/srv/" + "/".join(parts))
    has_dot = any(p.startswith(".") for p in path.split("/") if p)
    if has_dot:
        with pytest.raises(PathRefused):
            check_upload_path(path, [], HOMES)


@given(st.lists(st.text(alphabet="abc/.", min_size=1, max_size=6), min_size=1, max_size=6))
def test_property_a_passing_path_is_one_check_path_accepts_with_no_dot_component(parts):
    path = normalised("/" + "/".join(parts))
    try:
        result = check_upload_path(path, [], HOMES)
    except PathRefused:
        return
    assert result == path == posixpath.normpath(path)
    assert check_path(path, []) == path
    assert not any(p.startswith(".") for p in path.split("/"))
