"""What the browser tests and the browser benchmarks share: Debian's chromium, its flags, a free local port.

bench/ imports this module (`from tests.support import ...`, run from the repository root); tests never
import bench/.
"""
import shutil
import socket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
