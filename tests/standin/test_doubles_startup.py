"""Start-up of the stand-in's command doubles: every call of a double is a
process of its own, so what it imports is paid on every call.

Runs on the machine (no stand-in, no root): the doubles' package is imported
in a fresh interpreter, as the double scripts of layout.double_script do.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(HERE, "doubles")
sys.path.insert(0, DOUBLES)

from standin_doubles import MAINS, OWN, layout, main_of  # noqa: E402


def imported_after(name):
    """The standin_doubles modules and the heavy stdlib modules a fresh interpreter holds after main_of(name)."""
    code = (f"import sys, json; sys.path.insert(0, {DOUBLES!r}); "
            f"from standin_doubles import main_of; main_of({name!r}); "
            "print(json.dumps(sorted(m for m in sys.modules "
            "if m.startswith('standin_doubles') or m in ('http.server', 'socketserver', 'ctypes', 'tempfile'))))")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout))


def test_every_command_double_has_an_entry_point():
    # the base system's doubles; pkg installs the others (bastille, nginx, ollama, llama-server)
    base = {cmd for cmd in layout.COMMANDS.values() if cmd not in layout.USERLAND}
    assert base <= set(MAINS) | set(OWN)
    for cmd in sorted(set(MAINS) | set(OWN)):
        assert callable(main_of(cmd)), cmd
    with pytest.raises(KeyError):
        main_of("sed")  # userland doubles start from userland.MAINS, not dispatch


@pytest.mark.parametrize("cmd, own_module", [
    ("sysrc", "standin_doubles.sysrc"),
    ("jexec", "standin_doubles.jails"),
    ("timeout", "standin_doubles.procs"),
    ("pkg", "standin_doubles.pkgpw"),
])
def test_a_double_imports_only_what_it_needs(cmd, own_module):
    loaded = imported_after(cmd)
    assert own_module in loaded
    # the jails' daemons (services.py, http.server) and unrelated doubles stay out of every other call
    assert not loaded & {"standin_doubles.services", "http.server", "socketserver", "standin_doubles.bastille",
                         "standin_doubles.pfctl", "standin_doubles.newsyslog", "standin_doubles.userland"}


def test_zfs_and_freebsd_version_import_no_other_double():
    for cmd in ("zfs", "zpool", "freebsd-version"):
        assert imported_after(cmd) == {"standin_doubles", "standin_doubles.common"}
