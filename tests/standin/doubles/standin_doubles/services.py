"""Service daemons of the jails, and devfs(8): stand-in doubles (NOT the real programs).

Each server really listens, in the network stack of the jail it runs in (a VNET jail's own
namespace, so at the jail's address), and answers just enough for a test to see that the
right program listens at the right place. Where the real program detaches itself, the double
does too (fork, setsid, pidfile), so the ports' rc.d scripts manage it as on FreeBSD.

sshd (FreeBSD base usr.sbin/sshd, sshd(8)):
  sshd -t [-f FILE]          configuration check: exit 0 (the file, when present, must be readable)
  sshd [-f FILE]             detach, write /var/run/sshd.pid, listen on port 22 (Port/ListenAddress of
                             sshd_config when set, else every address of the jail) and greet each
                             connection with an SSH-2.0 banner, then close it (no key exchange: the
                             stand-in does not implement the SSH protocol)
nginx (ports www/nginx, nginx(8)):
  nginx -t [-q] [-c FILE]    "syntax is ok" / "test is successful" on stderr, or the [emerg] line, exit 1
  nginx [-c FILE]            detach, write /var/run/nginx.pid, listen on the first "listen N;" of the
                             configuration (80 by default) and serve the "root" directory's files
  nginx -s stop|quit|reload|reopen   TERM|QUIT|HUP|USR1 to the pid of /var/run/nginx.pid
ollama (ports misc/ollama; its rc.d script runs it under daemon(8)):
  ollama serve               listen on OLLAMA_HOST (default 127.0.0.1:11434) in the foreground;
                             GET / "Ollama is running", GET /api/version {"version": ...},
                             GET /api/tags {"models": []}
  ollama -v|--version        "ollama version is VERSION"
llama-server (ports misc/llama-cpp; under daemon(8)):
  llama-server -m MODEL [--host H] [--port P]   the model must be a readable file ("error: failed to
                             load model", exit 1); GET /health {"status": "ok"}
devfs (FreeBSD sbin/devfs, devfs(8), rule subcommand only):
  devfs rule -s N delset | add RULE... | show;  devfs rule showsets
  rulesets live in the simulated kernel (kernel.json "devfs_rulesets"); "add include N" needs set N
  ("devfs: ruleset N does not exist", exit 1). Not modelled: applying rules to mounted devfs.
Anything else: not implemented (exit 64).
"""

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import socketserver
import sys

from .common import err, getopt_strict, kernel, not_implemented, out

OLLAMA_VERSION = "0.9.6"
SSH_BANNER = b"SSH-2.0-OpenSSH_9.9 FreeBSD-20250219 stand-in\r\n"
NGINX_CONF = "/usr/local/etc/nginx/nginx.conf"
NGINX_PID = "/var/run/nginx.pid"
SSHD_CONF = "/etc/ssh/sshd_config"
SSHD_PID = "/var/run/sshd.pid"


def _detach(pidfile):
    """daemon(3): fork, setsid, fork; the grandchild writes the pidfile and goes on; the caller exits 0."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    with open(pidfile, "w", encoding="ascii") as fh:
        fh.write(f"{os.getpid()}\n")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _bind(host, port):
    """A listening TCP socket, or the program's own bind error (the caller prints it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    return sock


def _json_handler(routes):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path not in routes:
                self.send_error(404)
                return
            body = routes[self.path]
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            sys.stderr.write("stand-in: " + (fmt % args) + "\n")

    return Handler


def _serve(sock, handler):
    server = socketserver.ThreadingTCPServer(sock.getsockname(), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


# ------------------------------------------------------------------ sshd

def _sshd_listen():
    port, address = 22, "0.0.0.0"
    try:
        with open(SSHD_CONF, encoding="utf-8") as fh:
            for line in fh:
                words = line.split("#", 1)[0].split()
                if len(words) == 2 and words[0].lower() == "port":
                    port = int(words[1])
                elif len(words) == 2 and words[0].lower() == "listenaddress":
                    address = words[1]
    except FileNotFoundError:
        pass
    return address, port


def sshd_main(args):
    opts, rest = getopt_strict("sshd", args, "tf:")
    if rest:
        not_implemented("sshd", args)
    o = dict(opts)
    if "-f" in o and o["-f"] != SSHD_CONF:
        not_implemented("sshd", args)
    if "-t" in o:
        return 0
    address, port = _sshd_listen()
    try:
        sock = _bind(address, port)
    except OSError as exc:
        err(f"Bind to port {port} on {address} failed: {exc.strerror}.")
        err("Cannot bind any address.")
        return 255
    _detach(SSHD_PID)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        conn, _peer = sock.accept()
        with contextlib.suppress(OSError):
            conn.sendall(SSH_BANNER)
        conn.close()


# ------------------------------------------------------------------ nginx

def _nginx_conf(path):
    with open(path, encoding="utf-8") as fh:
        text = re.sub(r"#[^\n]*", "", fh.read())
    listen = re.search(r"\blisten\s+(?:([\d.]+):)?(\d+)[^;]*;", text)
    root = re.search(r"\broot\s+([^;\s]+)\s*;", text)
    host = listen.group(1) if listen and listen.group(1) else "0.0.0.0"
    port = int(listen.group(2)) if listen else 80
    return host, port, root.group(1) if root else "/usr/local/www/nginx"


def nginx_main(args):
    opts, rest = getopt_strict("nginx", args, "tqc:s:")
    if rest:
        not_implemented("nginx", args)
    o = dict(opts)
    conf = o.get("-c", NGINX_CONF)
    if "-s" in o:
        sig = {"stop": signal.SIGTERM, "quit": signal.SIGQUIT, "reload": signal.SIGHUP, "reopen": signal.SIGUSR1}
        if o["-s"] not in sig or "-t" in o:
            not_implemented("nginx", args)
        try:
            with open(NGINX_PID, encoding="ascii") as fh:
                os.kill(int(fh.read().strip()), sig[o["-s"]])
        except (OSError, ValueError):
            err(f'nginx: [error] invalid PID number "" in "{NGINX_PID}"')
            return 1
        return 0
    if not os.path.isfile(conf):
        err(f'nginx: [emerg] open() "{conf}" failed (2: No such file or directory)')
        if "-t" in o:
            err(f"nginx: configuration file {conf} test failed")
        return 1
    host, port, root = _nginx_conf(conf)
    if "-t" in o:
        if "-q" not in o:
            err(f"nginx: the configuration file {conf} syntax is ok")
            err(f"nginx: configuration file {conf} test is successful")
        return 0
    if "-q" in o:
        not_implemented("nginx", args)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        err(f"nginx: [emerg] bind() to {host}:{port} failed ({exc.errno}: {exc.strerror})")
        return 1
    _detach(NGINX_PID)

    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=root, **kw)

        def log_message(self, fmt, *a):
            pass

    _serve(sock, Files)
    return 0


# ------------------------------------------------------------------ ollama, llama-server

def ollama_main(args):
    if args in (["-v"], ["--version"]):
        out(f"ollama version is {OLLAMA_VERSION}")
        return 0
    if args != ["serve"]:
        not_implemented("ollama", args)
    host, _sep, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
    try:
        sock = _bind(host or "127.0.0.1", int(port))
    except (OSError, ValueError) as exc:
        err(f"Error: listen tcp {host}:{port}: bind: {getattr(exc, 'strerror', exc)}")
        return 1
    err(f"stand-in ollama: Listening on {host}:{port} (version {OLLAMA_VERSION})")
    _serve(sock, _json_handler({"/": "Ollama is running", "/api/version": {"version": OLLAMA_VERSION},
                                "/api/tags": {"models": []}}))
    return 0


def llama_server_main(args):
    argv, o = list(args), {"--host": "127.0.0.1", "--port": "8080"}
    while argv:
        flag = argv.pop(0)
        if flag not in ("-m", "--model", "--host", "--port") or not argv:
            not_implemented("llama-server", args)
        o["-m" if flag == "--model" else flag] = argv.pop(0)
    model = o.get("-m")
    if not model:
        not_implemented("llama-server", args)
    if not os.path.isfile(model):
        err(f"error: failed to load model '{model}'")
        return 1
    try:
        sock = _bind(o["--host"], int(o["--port"]))
    except (OSError, ValueError) as exc:
        err(f"error: couldn't bind HTTP server socket, hostname: {o['--host']}, port: {o['--port']}: {exc}")
        return 1
    _serve(sock, _json_handler({"/health": {"status": "ok"}}))
    return 0


# ------------------------------------------------------------------ devfs

def devfs_main(args):
    if args == ["rule", "showsets"]:
        with kernel() as k:
            for number in sorted(int(n) for n in k.get("devfs_rulesets", {})):
                out(str(number))
        return 0
    if len(args) < 4 or args[:2] != ["rule", "-s"] or not args[2].isdigit():
        not_implemented("devfs", args)
    number, verb, rule = args[2], args[3], args[4:]
    if verb == "show" and not rule:
        with kernel() as k:
            rules = k.get("devfs_rulesets", {}).get(number)
        if rules is None:
            err(f"devfs: ruleset {number} does not exist")
            return 1
        for index, text in enumerate(rules, start=1):
            out(f"{index * 100} {text}")
        return 0
    if verb == "delset" and not rule:
        with kernel(write=True) as k:
            k.setdefault("devfs_rulesets", {}).pop(number, None)
        return 0
    if verb == "add" and rule:
        if rule[0] == "include" and (len(rule) != 2 or not rule[1].isdigit()):
            err(f"devfs: invalid ruleset: {' '.join(rule[1:])}")
            return 1
        if rule[0] not in ("include", "hide", "path"):
            not_implemented("devfs", args)
        with kernel(write=True) as k:
            sets = k.setdefault("devfs_rulesets", {})
            if rule[0] == "include" and rule[1] not in sets:
                err(f"devfs: ruleset {rule[1]} does not exist")
                return 1
            sets.setdefault(number, []).append(" ".join(rule))
        return 0
    not_implemented("devfs", args)
    return 64
