"""The package installs as users and contributors install it, into fresh venvs.

These build real virtual environments (pip, with its cache), so they are
marked slow; CI runs them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import connect_when_up, free_port, round_trip

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".venv", "build", "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

pytestmark = pytest.mark.slow


def copy_source(dest: Path) -> Path:
    """A clean copy of the source tree (no build leftovers, no venvs)."""
    tree = dest / "src"
    shutil.copytree(
        ROOT,
        tree,
        ignore=lambda d, names: [
            n
            for n in names
            if n in SKIP
            or n.endswith(".egg-info")
            or n == "__pycache__"
            or n == "dropin.cache"
        ],
    )
    return tree


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin"


def pip_install(bin_dir: Path, *args: str, cwd: Path) -> None:
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def assert_plugin_works(bin_dir: Path, cwd: Path) -> None:
    """twistd lists echod, and ``twistd -n echod`` serves echo."""
    listing = subprocess.run(
        [str(bin_dir / "twistd"), "--help"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0
    assert any(line.split()[:1] == ["echod"] for line in listing.stdout.splitlines()), (
        listing.stdout
    )
    port = free_port()
    daemon = subprocess.Popen(
        [
            str(bin_dir / "twistd"),
            "-n",
            "--pidfile=",
            "echod",
            "--port",
            f"tcp:{port}:interface=127.0.0.1",
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with connect_when_up(port, daemon) as sock:
            assert round_trip(sock, b"installed") == b"installed"
    finally:
        daemon.terminate()
        out = daemon.communicate(timeout=30)[0]
    assert "Traceback" not in out, out
    assert "dropin" not in out.lower(), out  # no plugin cache errors


def test_pip_install_into_fresh_venv(tmp_path: Path) -> None:
    tree = copy_source(tmp_path)
    bin_dir = make_venv(tmp_path / "venv")
    pip_install(bin_dir, ".", cwd=tree)
    shutil.rmtree(tree)  # the installed copy must stand alone
    assert_plugin_works(bin_dir, tmp_path)
    plugins = list(
        (tmp_path / "venv").glob("lib/python*/site-packages/twisted/plugins")
    )
    assert (plugins[0] / "echod_plugin.py").exists()
    # echod adds its plugin beside Twisted's; Twisted's own package is intact
    assert (plugins[0] / "__init__.py").read_text().count("pluginPackagePaths") >= 1
    version = subprocess.run(
        [str(bin_dir / "echod"), "version"], capture_output=True, text=True, timeout=60
    )
    assert version.stdout.startswith("echod ")


def test_editable_install_strict_mode_finds_the_plugin(tmp_path: Path) -> None:
    """The documented contributor install: ``pip install -e . --config-settings
    editable_mode=strict``; edits to the source show without reinstalling."""
    tree = copy_source(tmp_path)
    bin_dir = make_venv(tmp_path / "venv")
    pip_install(
        bin_dir, "-e", ".", "--config-settings", "editable_mode=strict", cwd=tree
    )
    assert_plugin_works(bin_dir, tmp_path)
    tap = tree / "echod" / "tap.py"
    tap.write_text(
        tap.read_text().replace(
            "An echo daemon that returns every byte, in order",
            "EDITED-IN-PLACE echo daemon",
        )
    )
    helped = subprocess.run(
        [str(bin_dir / "twistd"), "echod", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "EDITED-IN-PLACE" in helped.stdout


def run_read_only(plugins: Path, command: list[str], cwd: Path) -> str:
    """Run C{command} with the plugin directory mounted read-only, as under
    ProtectSystem=strict (a private mount namespace, so nothing else sees it)."""
    inner = f'mount --bind -o ro "{plugins}" "{plugins}" && exec "$@"'
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", inner, "sh", *command],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.stdout + result.stderr


SCAN_PLUGINS = (
    "import sys; from twisted.python import log; log.startLogging(sys.stdout); "
    "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
)


def test_cache_plugins_makes_a_read_only_install_quiet(tmp_path: Path) -> None:
    """deploy/README.md's install step: ``echod cache-plugins`` after installing,
    so that twistd under ProtectSystem=strict logs no plugin cache error."""
    import os

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        message = "needs root and unshare for a read-only mount"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    tree = copy_source(tmp_path)
    bin_dir = make_venv(tmp_path / "venv")
    pip_install(bin_dir, ".", cwd=tree)
    plugins = next(
        (tmp_path / "venv").glob("lib/python*/site-packages/twisted/plugins")
    )
    (plugins / "dropin.cache").unlink(missing_ok=True)
    scan = [str(bin_dir / "python"), "-c", SCAN_PLUGINS]
    # Without a cache, a read-only install cannot write one, and says so.
    assert "Unable to write to plugin cache" in run_read_only(plugins, scan, tmp_path)
    out = subprocess.run(
        [str(bin_dir / "echod"), "cache-plugins"], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and "plugin cache rebuilt" in out.stdout
    quiet = run_read_only(plugins, scan, tmp_path)
    assert "Unable to write" not in quiet, quiet
    version = [str(bin_dir / "twistd"), "-n", "--pidfile=", "echod", "--version"]
    assert "echod" in run_read_only(plugins, version, tmp_path)
