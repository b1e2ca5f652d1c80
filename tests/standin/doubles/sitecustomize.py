"""Stand-in FreeBSD host: make Python inside the stand-in report FreeBSD.

Installed by tests/standin/standin as the interpreter's sitecustomize inside
the stand-in root only.  os.uname() (and so platform.system(), which Ansible's
fact gathering and platform-specific module classes use) answers as a
FreeBSD 14 amd64 host would.

FreeBSD's lang/python311 reads its site-packages from
/usr/local/lib/python3.11/site-packages, where FreeBSD's py311-* packages
install (the stand-in's pkg puts py311-psycopg2 there); the machine's
interpreter does not know that directory, so it is added here.
"""
import json
import os
import site

_real_uname = os.uname


def _standin_uname():
    real = _real_uname()
    release, nodename = "14.3-RELEASE", real.nodename
    try:
        with open("/.standin/kernel.json", encoding="utf-8") as fh:
            kernel = json.load(fh)
        release = kernel.get("release", release)
        nodename = kernel.get("hostname") or nodename
    except (OSError, ValueError):
        pass
    return os.uname_result(("FreeBSD", nodename, release,
                            f"FreeBSD {release} GENERIC (stand-in)", "amd64"))


os.uname = _standin_uname


site.addsitedir("/usr/local/lib/python3.11/site-packages")
