"""Offline bootstrap of pip for ansible-test's sanity virtual environments.

ansible-test creates each sanity test's virtual environment without pip and
then runs a cached ``get-pip`` script, which it otherwise downloads from a
host outside the package index. ``make sanity`` installs this file as that
cached script (``~/.ansible/test/cache/get_pip_<version>.py``). It takes the
same arguments as ``get-pip``: pip options, the requested packages (for
example ``pip==24.2``) and ``--no-setuptools``/``--no-wheel``. It bootstraps
pip from the wheel bundled with the standard library (ensurepip) and then
installs the requested versions from the configured package index.
"""

import subprocess
import sys

MARKER = "warden.fleet offline get-pip"


def run(*args: str) -> None:
    """Run a command quietly; show its output only if it fails."""
    result = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        raise SystemExit(result.returncode)


def main(argv: list[str]) -> int:
    skip = {"--no-setuptools", "--no-wheel"}
    options = [arg for arg in argv if arg.startswith("-") and arg not in skip]
    packages = [arg for arg in argv if not arg.startswith("-")]

    run(sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip")
    if packages:
        run(sys.executable, "-m", "pip", "install", *options, *packages)

    unwanted = [name for flag, name in (("--no-setuptools", "setuptools"), ("--no-wheel", "wheel")) if flag in argv]
    requested = {package.split("=")[0].split("<")[0].split(">")[0].lower() for package in packages}
    unwanted = [name for name in unwanted if name not in requested]
    if unwanted:
        run(sys.executable, "-m", "pip", "uninstall", "--yes", *unwanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
