"""py311-psycopg2 and pgvector in a jail of the stand-in FreeBSD host.

FreeBSD's Python has no psycopg2 until py311-psycopg2 is installed (then in
/usr/local/lib/python3.11/site-packages, ports databases/py-psycopg2), and the
database modules that run inside a db jail need it there; pgvector's extension
is a labelled placeholder (the stand-in has no build of it) that CREATE
EXTENSION accepts.

Needs root, the machine's PostgreSQL and Debian's python3-psycopg2.
"""

import glob
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402
from test_postgresql import JAIL, bring_up_jail, ok, sh  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")

IMPORT = f"jexec -l {JAIL} /usr/local/bin/python3.11 -c 'import psycopg2; print(psycopg2.__file__)'"


@pytest.fixture(scope="module")
def host():
    if not glob.glob("/usr/lib/python3/dist-packages/psycopg2/__init__.py"):
        pytest.fail("these tests need the machine's psycopg2 (Debian: apt-get install python3-psycopg2)")
    name = "pytest-psycopg2-" + uuid.uuid4().hex[:8]
    bring_up_jail(name)
    ok(name, f"bastille pkg {JAIL} install -y python311 >/dev/null")
    yield name
    H.down(name)


def test_psycopg2_is_importable_in_the_jail_only_while_its_package_is_installed(host):
    rc, _out, err = sh(host, IMPORT)
    assert rc == 1 and "No module named 'psycopg2'" in err
    ok(host, f"bastille pkg {JAIL} install -y py311-psycopg2 >/dev/null")
    assert ok(host, IMPORT).strip() == "/usr/local/lib/python3.11/site-packages/psycopg2/__init__.py"
    # the package is the jail's: the host's Python (without the package) still has none
    rc, _out, err = sh(host, "/usr/local/bin/python3.11 -c 'import psycopg2'")
    assert rc == 1 and "No module named 'psycopg2'" in err
    ok(host, f"bastille pkg {JAIL} delete -y py311-psycopg2 >/dev/null")
    rc, _out, err = sh(host, IMPORT)
    assert rc == 1 and "No module named 'psycopg2'" in err


def test_psycopg2_in_the_jail_talks_to_the_jails_server_over_its_local_socket(host):
    ok(host, f"bastille pkg {JAIL} install -y postgresql17-server pgvector py311-psycopg2 >/dev/null"
             f" && bastille sysrc {JAIL} postgresql_enable=YES >/dev/null"
             f" && bastille service {JAIL} postgresql initdb >/dev/null 2>&1"
             f" && bastille service {JAIL} postgresql start >/dev/null 2>&1")
    script = ("import psycopg2; c = psycopg2.connect(host='/tmp', user='postgres', dbname='postgres'); "
              "c.autocommit = True; cur = c.cursor(); cur.execute('CREATE EXTENSION vector'); "
              "cur.execute(\"SELECT extversion, obj_description(oid, 'pg_extension') FROM pg_extension "
              "WHERE extname = 'vector'\"); print(cur.fetchone())")
    proc = H.exec_in(host, ["jexec", "-l", "-U", "postgres", JAIL, "/usr/local/bin/python3.11", "-c", script],
                     capture=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # pgvector's version, and the placeholder says what it is
    assert "'0.8.0'" in out and "NOT vector 0.8.0" in out
