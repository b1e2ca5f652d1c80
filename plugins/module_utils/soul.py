# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Agents' souls from git: fetch the pinned version, verify it, check it, install it into a hostile workspace.

Three phases per call, for every agent of the host:

1. resolve: bring the root-owned checkout to the pinned commit's objects (a temporary repository in check
   mode), verify the commit, and check the soul (manifest, core files, secrets, runtime-owned paths);
2. plan: compare each soul file with what the workspace holds, reading nothing the agent could have pointed
   elsewhere;
3. apply: write the files that differ (no-follow, through directory descriptors, temp file then rename),
   remove files the previous version tracked and this one does not, then move the checkout's HEAD, which
   records what the workspace was installed from.

Phase 3 runs only when phases 1 and 2 found no problem for any agent.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

DEFAULT_KNOWN_HOSTS = "/usr/local/etc/warden/ssh_known_hosts"
# The guide's soul bundle (seeds/multi-agent-deployment.md); TOOLS.md is optional, it is often shared host-wide.
REQUIRED_FILES = ("SOUL.md", "USER.md", "IDENTITY.md", "AGENTS.md")
# What the agent writes at runtime: a soul that tracks these would overwrite the agent's own data.
RUNTIME_PATHS = ("MEMORY.md", "memory")
MANIFEST = "manifest.json"
SCHEMA_VERSIONS = (1,)

FILE_MODE = 0o640
EXEC_MODE = 0o750
DIR_MODE = 0o750
DEST_MODE = 0o700
# A file larger than this is never shown in a diff.
MAX_DIFF_BYTES = 64 * 1024
PARALLEL = 8

# Where a tag is fetched before its soul is accepted; refs/tags/TAG (the pin) is written after the install.
INCOMING = "refs/warden/incoming/"
# Branches and tags fetched aside when a server will not hand out a commit by its id.
REMOTE = "refs/warden/remote/"
COMMIT_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
# git check-ref-format's rules that matter for a tag name given on a command line.
TAG_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)[^\s~^:?*\[\\\x00-\x1f\x7f]+(?<!\.lock)(?<![./])$")
SSH_URL_RE = re.compile(r"^(?:ssh://|git\+ssh://|ssh\+git://|[\w.-]+@[\w.-]+:)")
USERINFO_RE = re.compile(r"(://)[^/@\s]+@")

SECRET_FILE_NAMES = frozenset({".env", ".netrc", ".pgpass", ".git-credentials", "id_rsa", "id_dsa", "id_ecdsa",
                               "id_ed25519"})
SECRET_PATTERNS = (
    ("a private key", re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("an AWS access key id", re.compile(rb"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(rb"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("an API key (sk-...)", re.compile(rb"\bsk-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(rb"\bxox[abposre]-[A-Za-z0-9-]{10,}")),
)
# password|secret|token|api_key = "a literal value": quoted (8+ characters) or bare (16+, letters and digits).
ASSIGNMENT_RE = re.compile(
    rb"(?i)\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[\w.-]*[\"']?"
    rb"[ \t]*[:=][ \t]*(?:\"([^\"\s]{8,})\"|'([^'\s]{8,})'|([A-Za-z0-9+/=_.-]{16,}))"
)
PLACEHOLDER_PREFIXES = (b"$", b"<", b"{{", b"%(", b"${")


class SoulError(Exception):
    """The call failed: every problem of every agent, and the results of what was done."""

    def __init__(self, problems, results=None):
        super().__init__("; ".join(problems))
        self.problems = list(problems)
        self.results = results or {}


class GitError(Exception):
    pass


def redact_url(text):
    """Drop user:password@ from URLs, so a credential in a repository URL never reaches a message."""
    return USERINFO_RE.sub(r"\1***@", text)


def is_ssh(repo):
    return bool(SSH_URL_RE.match(repo))


class Git:
    """git as root, bounded in time, never asking for input, ssh only against the pinned known_hosts."""

    def __init__(self, binary, timeout=120, known_hosts=DEFAULT_KNOWN_HOSTS):
        self.binary = binary
        self.timeout = timeout
        self.known_hosts = known_hosts

    def environment(self, key_file=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
               "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "ConnectTimeout=30"]
        if key_file:
            ssh += ["-o", "IdentitiesOnly=yes", "-i", key_file]
        env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_SSH_COMMAND=shlex.join(ssh))
        return env

    def run(self, args, repo_dir=None, key_file=None, stdin=None):
        """Run git and return its stdout (bytes); raise GitError naming the command on failure or timeout."""
        argv = [self.binary, "-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never"]
        if repo_dir:
            argv += ["-C", repo_dir]
        argv += list(args)
        # A session of its own, so a timeout ends git and whatever it started (ssh, remote helpers).
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environment(key_file),
                                start_new_session=True)
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise GitError(f"git {args[0]} did not finish within {self.timeout}s") from None
        if proc.returncode != 0:
            message = err.decode("utf-8", "replace").strip().splitlines()
            detail = redact_url(message[-1]) if message else f"exit {proc.returncode}"
            raise GitError(f"git {args[0]} failed: {detail}")
        return out

    def rev(self, repo_dir, name, peel="^{commit}"):
        """The commit a name resolves to in repo_dir (the object itself with peel ""), or None."""
        try:
            out = self.run(["rev-parse", "-q", "--verify", "--end-of-options", f"{name}{peel}"], repo_dir)
        except GitError:
            return None
        return out.decode().strip() or None

    def ls_remote(self, repo, version, key_file=None):
        """{refname: commit} of refs/tags/VERSION (and its peeled ^{}) and refs/heads/VERSION upstream."""
        out = self.run(["ls-remote", "--end-of-options", repo, f"refs/tags/{version}", f"refs/tags/{version}^{{}}",
                        f"refs/heads/{version}"], key_file=key_file)
        wanted = {f"refs/tags/{version}", f"refs/tags/{version}^{{}}", f"refs/heads/{version}"}
        refs = {}
        for line in out.decode("utf-8", "replace").splitlines():
            oid, _tab, ref = line.partition("\t")
            if ref in wanted:
                refs[ref] = oid
        return refs

    def tree(self, repo_dir, commit):
        """[(mode, type, oid, path)] of every entry of the commit's tree, recursively."""
        out = self.run(["ls-tree", "-r", "-z", "--full-tree", commit], repo_dir)
        entries = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _tab, path = record.partition(b"\t")
            mode, kind, oid = meta.decode().split()
            entries.append((mode, kind, oid, path.decode("utf-8", "surrogateescape")))
        return entries

    def blobs(self, repo_dir, oids):
        """{oid: bytes} read in one git cat-file --batch."""
        if not oids:
            return {}
        unique = sorted(set(oids))
        out = self.run(["cat-file", "--batch"], repo_dir, stdin="".join(f"{oid}\n" for oid in unique).encode())
        blobs, pos = {}, 0
        for oid in unique:
            end = out.index(b"\n", pos)
            header = out[pos:end].decode().split()
            if len(header) != 3:
                raise GitError(f"git cat-file: object {oid} is missing")
            size = int(header[2])
            blobs[oid] = out[end + 1:end + 1 + size]
            pos = end + 1 + size + 1
        return blobs


def blob_oid(data, algorithm):
    return hashlib.new(algorithm, b"blob %d\0" % len(data) + data).hexdigest()


# --- checks of the soul's content ----------------------------------------------------------------------


def secret_findings(path, data):
    """[(line, what)] for every secret-looking thing in one file; never the value itself."""
    findings = []
    name = path.rsplit("/", 1)[-1]
    if name in SECRET_FILE_NAMES or name.startswith(".env.") or name.endswith(".env"):
        findings.append((None, "a secrets file by its name"))
    for what, pattern in SECRET_PATTERNS:
        for match in pattern.finditer(data):
            findings.append((data.count(b"\n", 0, match.start()) + 1, what))
    for match in ASSIGNMENT_RE.finditer(data):
        quoted = match.group(1) or match.group(2)
        value = quoted or match.group(3)
        if value.startswith(PLACEHOLDER_PREFIXES) or len(set(value)) <= 2:
            continue
        if not quoted and not (re.search(rb"[0-9]", value) and re.search(rb"[A-Za-z]", value)):
            continue
        findings.append((data.count(b"\n", 0, match.start()) + 1, "a password, secret or token assignment"))
    return sorted(set(findings), key=lambda f: (f[0] or 0, f[1]))


def manifest_problems(agent, data):
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return [f"{MANIFEST} is not valid JSON ({exc.__class__.__name__}: {exc})"]
    if not isinstance(manifest, dict):
        return [f"{MANIFEST} must be a JSON object"]
    problems = []
    schema = manifest.get("schema_version")
    if isinstance(schema, bool) or schema not in SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SCHEMA_VERSIONS)
        problems.append(f"{MANIFEST}: schema_version {schema!r} is not supported (supported: {supported})")
    if manifest.get("agent_id") != agent:
        problems.append(f"{MANIFEST}: agent_id {manifest.get('agent_id')!r} is not the agent's name {agent!r}")
    return problems


def installable(path):
    """Soul files that go into the workspace: not git's own (.gitignore, .github/...), nothing hidden."""
    return not any(part.startswith(".") for part in path.split("/"))


def soul_problems(agent, entries, blobs, required_files, runtime_paths):
    problems = []
    paths = {path for _m, kind, _o, path in entries if kind == "blob"}
    for mode, kind, _oid, path in entries:
        if kind != "blob" or mode == "120000":
            what = "a symlink" if mode == "120000" else "a submodule" if kind == "commit" else kind
            problems.append(f"{path} is {what}: a soul holds regular files only")
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in runtime_paths):
            problems.append(f"the soul tracks {path}, which the agent owns at runtime: remove it from the soul repo")
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            problems.append(f"{path!r} is not a UTF-8 file name")
        # git's own checkout refuses these; a hand-made tree (git mktree) can still carry them.
        if any(part in ("", ".", "..") or part.lower() == ".git" for part in path.split("/")):
            problems.append(f"{path!r} has a '.', '..', '.git' or empty component")
    for name in (MANIFEST, *required_files):
        if name not in paths:
            problems.append(f"the core file {name} is missing")
    if MANIFEST in paths:
        oid = next(o for _m, k, o, p in entries if p == MANIFEST and k == "blob")
        problems += manifest_problems(agent, blobs[oid])
    for _mode, kind, oid, path in entries:
        if kind == "blob":
            for line, what in secret_findings(path, blobs[oid]):
                where = f"{path} line {line}" if line else path
                problems.append(f"secret in {where} ({what}): keep secrets out of the soul repo, rotate it")
    return problems


# --- paths root trusts -----------------------------------------------------------------------------------


def root_path_problem(path):
    """Why root must not run git in path (or create it), or None: every existing directory from / down is
    root's and writable by no one else (a world-writable one must be sticky)."""
    real = os.path.realpath(path)
    current = "/"
    for part in [""] + real.strip("/").split("/"):
        current = os.path.join(current, part) if part else "/"
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None
        if st.st_uid != 0:
            return f"{current} is owned by uid {st.st_uid}, not root"
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022 and not (
            current != real and st.st_mode & stat.S_ISVTX
        ):
            return f"{current} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def key_file_problem(path):
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"key_file {path}: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        return f"key_file {path} must be a regular file owned by root, mode 0600 (is {stat.S_IMODE(st.st_mode):04o})"
    return None


def resolve_id(name, getter):
    """A user or group id from its name or number, None when there is none."""
    if str(name).isdigit():
        return int(name)
    try:
        return getter(name)
    except KeyError:
        return None


# --- the workspace, through descriptors ------------------------------------------------------------------

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_path_nofollow(path):
    """A descriptor of the directory path, every component opened without following symlinks."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in [p for p in path.split("/") if p]:
            nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


class Workspace:
    """The agent's workspace, held by descriptor. Reads only regular, singly linked files; never follows."""

    def __init__(self, fd, uid, gid):
        self.fd = fd
        self.uid = uid
        self.gid = gid

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def open_dir(self, rel_dir, create):
        """(fd, planted) of the directory rel_dir under the workspace; fd None when it does not exist (or is
        not a directory) and create is false. A symlink planted where a directory goes is replaced."""
        fd = os.dup(self.fd)
        try:
            for part in [p for p in rel_dir.split("/") if p]:
                try:
                    nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    nfd = self._mkdir(fd, part)
                except OSError:
                    # ELOOP on Linux, EMLINK on FreeBSD (open(2)): a symlink; ENOTDIR: something else.
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise OSError(errno.ENOTDIR, "not a directory", part) from None
                    if not create:
                        os.close(fd)
                        return None
                    os.unlink(part, dir_fd=fd)
                    nfd = self._mkdir(fd, part)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _mkdir(self, parent_fd, name):
        os.mkdir(name, 0o700, dir_fd=parent_fd)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        os.fchown(fd, self.uid, self.gid)
        os.fchmod(fd, DIR_MODE)
        return fd

    def probe(self, dir_fd, name, limit):
        """(kind, stat, content) of the entry name: kind is missing, file (content read when the file is a
        regular file with one link and at most limit bytes, else None), symlink, directory or other."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return "missing", None, None
        if stat.S_ISLNK(st.st_mode):
            return "symlink", st, None
        if stat.S_ISDIR(st.st_mode):
            return "directory", st, None
        if not stat.S_ISREG(st.st_mode):
            return "other", st, None
        if st.st_nlink != 1 or st.st_size > limit:
            return "file", st, None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return "other", st, None
        try:
            st = os.fstat(fd)
            # Swapped since the stat: judge what was opened, read nothing that is not a plain file.
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > limit:
                return "other" if not stat.S_ISREG(st.st_mode) else "file", st, None
            chunks, left = [], limit + 1
            while left > 0:
                chunk = os.read(fd, min(left, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return "file", st, b"".join(chunks)
        finally:
            os.close(fd)

    def write(self, dir_fd, name, data, mode):
        """Replace name with data: a new file (owner, mode, fsync on its descriptor) renamed over it."""
        tmp = f".warden-soul-{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fchown(fd, self.uid, self.gid)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quiet(tmp, dir_fd)
            raise
        os.close(fd)
        try:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _unlink_quiet(tmp, dir_fd)
            raise
        os.fsync(dir_fd)

    def unlink(self, dir_fd, name):
        os.unlink(name, dir_fd=dir_fd)
        os.fsync(dir_fd)


def _unlink_quiet(name, dir_fd):
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def _text(data):
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- one call ---------------------------------------------------------------------------------------------


class Outcome:
    def __init__(self):
        self.results = {}
        self.changed_agents = []
        self.diffs = []
        self.warnings = []


class _Soul:
    """The state of one agent's soul through the phases."""

    def __init__(self, entry):
        self.entry = entry
        self.agent = entry["agent"]
        self.dest = entry["dest"]
        self.problems = []
        self.git_dir = None  # where the pinned commit's objects are (dest or a scratch repository)
        self.commit = None
        self.previous = None
        self.moved_tag = None
        self.new_pin = None  # (tag ref, tag object, incoming ref) to record once installed
        self.fetched = False
        self.url_changed = False
        self.entries = []
        self.blobs = {}
        self.previous_tree = {}
        self.uid = self.gid = None
        self.actions = []  # (rel_path, kind): kind write or remove
        self.changed_files = []
        self.removed_files = []
        self.diffs = []

    def problem(self, text):
        self.problems.append(f"{self.agent}: {text}")


class SoulInstaller:
    def __init__(self, git, check_mode=False, moved_tag="fail", required_files=REQUIRED_FILES,
                 runtime_paths=RUNTIME_PATHS):
        self.git = git
        self.check_mode = check_mode
        self.moved_tag = moved_tag
        self.required_files = tuple(required_files)
        self.runtime_paths = tuple(runtime_paths)
        self.scratch_root = None

    def run(self, entries):
        souls = [_Soul(entry) for entry in entries]
        outcome = Outcome()
        problems = self._duplicates(souls)
        if problems:
            raise SoulError(problems)
        try:
            if self.check_mode:
                self.scratch_root = tempfile.mkdtemp(prefix="warden-soul-")
            with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(souls)))) as pool:
                list(pool.map(self._resolve_safely, souls))
            for soul in souls:
                if not soul.problems:
                    self._plan(soul)
            problems = [p for soul in souls for p in soul.problems]
            if problems:
                raise SoulError(problems, {s.agent: self._result(s) for s in souls})
            if not self.check_mode:
                for soul in souls:
                    self._apply(soul)
            problems = [p for soul in souls for p in soul.problems]
            results = {soul.agent: self._result(soul) for soul in souls}
            if problems:
                raise SoulError(problems, results)
        finally:
            if self.scratch_root:
                shutil.rmtree(self.scratch_root, ignore_errors=True)
        for soul in souls:
            if soul.moved_tag and self.moved_tag == "warn":
                outcome.warnings.append(
                    f"{soul.agent}: tag {soul.entry['version']} moved upstream from {soul.moved_tag['old']} to "
                    f"{soul.moved_tag['new']}; {soul.moved_tag['old']} stays installed (pin the new commit to follow)"
                )
            outcome.diffs += soul.diffs
        outcome.results = results
        outcome.changed_agents = sorted(agent for agent, result in results.items() if result["changed"])
        return outcome

    @staticmethod
    def _duplicates(souls):
        problems, seen = [], {}
        for soul in souls:
            for key in ("agent", "dest", "workspace"):
                value = soul.entry[key]
                if (key, value) in seen:
                    problems.append(f"{soul.agent}: {key} {value} is also {seen[(key, value)]}'s")
                seen[(key, value)] = soul.agent
        return problems

    def _result(self, soul):
        return {
            "version": soul.entry["version"],
            "commit": soul.commit,
            "previous_commit": soul.previous,
            "changed": bool(soul.changed_files or soul.removed_files or soul.url_changed
                            or (soul.commit and soul.commit != soul.previous)),
            "changed_files": soul.changed_files,
            "removed_files": soul.removed_files,
            "moved_tag": soul.moved_tag,
            "fetched": soul.fetched,
        }

    # --- phase 1: the pinned commit, verified and checked ---

    def _resolve_safely(self, soul):
        try:
            self._resolve(soul)
        except GitError as exc:
            soul.problem(f"{redact_url(soul.entry['repo'])}: {exc}")
        except OSError as exc:
            soul.problem(f"{exc.filename or soul.dest}: {exc.strerror}")

    def _resolve(self, soul):
        entry, git = soul.entry, self.git
        repo, version = entry["repo"], entry["version"]
        if repo.startswith("-") or not (COMMIT_RE.match(version) or TAG_RE.match(version)):
            soul.problem(f"repo {repo!r} or version {version!r} is not usable on a git command line")
            return
        problem = root_path_problem(soul.dest)
        if problem:
            soul.problem(f"dest {soul.dest}: {problem}; root's git runs there, so nobody else may change it")
            return
        key_file = entry.get("key_file")
        if is_ssh(repo):
            if key_file and key_file_problem(key_file):
                soul.problem(key_file_problem(key_file))
                return
            if not os.path.isfile(git.known_hosts):
                soul.problem(f"known_hosts {git.known_hosts} is missing: add the host key of {redact_url(repo)}'s "
                             "server, checked out of band")
                return
        soul.uid = resolve_id(entry["owner"], lambda n: pwd.getpwnam(n).pw_uid)
        soul.gid = resolve_id(entry["group"], lambda n: grp.getgrnam(n).gr_gid)
        if (soul.uid is None or soul.gid is None) and not self.check_mode:
            soul.problem(f"owner {entry['owner']!r} or group {entry['group']!r} does not exist")
            return

        existing = os.path.isdir(os.path.join(soul.dest, ".git"))
        if existing:
            soul.previous = git.rev(soul.dest, "HEAD")
            url = git.run(["config", "--default", "", "--get", "remote.origin.url"], soul.dest).decode().strip()
            soul.url_changed = url != repo
        elif not self.check_mode:
            self._init_dest(soul)
            existing = True
        pins = soul.dest if existing and not soul.url_changed else None
        soul.git_dir = soul.dest if not self.check_mode else self._scratch(soul, existing)
        if not self.check_mode and soul.url_changed:
            self._forget_pins(soul)

        if COMMIT_RE.match(version):
            self._resolve_commit(soul, version, key_file)
        else:
            self._resolve_tag(soul, version, key_file, pins)
        if soul.problems or not soul.commit:
            return
        # Verify: the commit is what was pinned (or what the tag named), and its objects are here (HEAD, when
        # it is the installed one, was just resolved).
        if soul.commit != soul.previous and git.rev(soul.git_dir, soul.commit) != soul.commit:
            soul.problem(f"commit {soul.commit} did not verify in {soul.git_dir}")
            return
        soul.entries = git.tree(soul.git_dir, soul.commit)
        soul.blobs = git.blobs(soul.git_dir, [oid for _m, kind, oid, _p in soul.entries if kind == "blob"])
        for text in soul_problems(soul.agent, soul.entries, soul.blobs, self.required_files, self.runtime_paths):
            soul.problem(text)
        if soul.previous and soul.previous != soul.commit and not soul.url_changed:
            soul.previous_tree = {path: oid for _m, kind, oid, path in git.tree(soul.dest, soul.previous)
                                  if kind == "blob" and installable(path)}

    def _init_dest(self, soul):
        parent = os.path.dirname(soul.dest.rstrip("/"))
        os.makedirs(parent, mode=0o755, exist_ok=True)
        os.mkdir(soul.dest, DEST_MODE)
        self.git.run(["init", "-q", soul.dest])
        self.git.run(["config", "remote.origin.url", soul.entry["repo"]], soul.dest)

    def _forget_pins(self, soul):
        """The tags remembered from the old repository say nothing about the new one."""
        refs = self.git.run(["for-each-ref", "--format=%(refname)", "refs/tags/"], soul.dest).decode().split()
        if refs:
            self.git.run(["update-ref", "--stdin"], soul.dest,
                         stdin="".join(f"delete {ref}\n" for ref in refs).encode())
        self.git.run(["config", "remote.origin.url", soul.entry["repo"]], soul.dest)

    def _scratch(self, soul, existing):
        """Check mode: a throwaway repository that borrows the checkout's objects, so fetching writes nothing
        of the host's."""
        path = tempfile.mkdtemp(prefix=f"{soul.agent}-", dir=self.scratch_root)
        self.git.run(["init", "-q", "--bare", path])
        if existing:
            objects = os.path.join(os.path.realpath(soul.dest), ".git", "objects")
            with open(os.path.join(path, "objects", "info", "alternates"), "w", encoding="utf-8") as fh:
                fh.write(objects + "\n")
        return path

    def _resolve_commit(self, soul, commit, key_file):
        git = self.git
        if commit != soul.previous and git.rev(soul.git_dir, commit) != commit:
            soul.fetched = True
            repo = soul.entry["repo"]
            try:
                git.run(["fetch", "-q", "--no-tags", "--end-of-options", repo, commit], soul.git_dir,
                        key_file=key_file)
            except GitError:
                # A server that serves only advertised refs (protocol v0 without uploadpack.allowAnySHA1InWant):
                # fetch its branches and tags aside, then look for the commit among them.
                try:
                    git.run(["fetch", "-q", "--no-tags", "--end-of-options", repo, f"+refs/heads/*:{REMOTE}heads/*",
                             f"+refs/tags/*:{REMOTE}tags/*"], soul.git_dir, key_file=key_file)
                except GitError as exc:
                    soul.problem(f"commit {commit} could not be fetched from {redact_url(repo)} ({exc})")
                    return
            if git.rev(soul.git_dir, commit) != commit:
                soul.problem(f"commit {commit} could not be fetched from {redact_url(repo)}: no branch or tag "
                             "there holds it (force-pushed away?)")
                return
        soul.commit = commit

    def _resolve_tag(self, soul, tag, key_file, pins):
        git, repo = self.git, soul.entry["repo"]
        remote = git.ls_remote(repo, tag, key_file)
        raw = remote.get(f"refs/tags/{tag}")
        # An annotated tag is a tag object; the commit it names is its peeled ^{} entry.
        upstream = remote.get(f"refs/tags/{tag}^{{}}") or raw
        if raw is None:
            if f"refs/heads/{tag}" in remote:
                soul.problem(f"version {tag} is a branch in {redact_url(repo)}, not a pinned version: pin a tag or a "
                             "full commit id")
            else:
                soul.problem(f"version {tag} is not a tag in {redact_url(repo)} (a commit id must have all its "
                             "40 hex digits)")
            return
        pinned = git.rev(pins, f"refs/tags/{tag}") if pins else None
        # Re-tagging the same commit (a new tag object) is not a move.
        if pinned and git.rev(pins, f"refs/tags/{tag}", peel="") != raw and pinned != upstream:
            soul.moved_tag = {"old": pinned, "new": upstream}
            if self.moved_tag == "fail":
                soul.problem(f"tag {tag} moved upstream from {pinned} to {upstream}; it is not followed: pin "
                             f"{upstream} to take the new commit, or keep {pinned}")
                return
            soul.commit = pinned
            return
        if pinned:
            soul.commit = pinned
            return
        soul.fetched = True
        # Fetched aside: the tag is pinned (refs/tags/TAG) only once its soul is installed, so a soul refused
        # and then fixed upstream by moving the tag is not taken for a moved tag.
        incoming = f"{INCOMING}{tag}"
        git.run(["fetch", "-q", "--no-tags", "--end-of-options", repo, f"+refs/tags/{tag}:{incoming}"],
                soul.git_dir, key_file=key_file)
        fetched = git.rev(soul.git_dir, incoming, peel="")
        if fetched != raw:
            soul.problem(f"tag {tag} changed while it was fetched ({raw}, then {fetched}); run again")
            return
        soul.commit = git.rev(soul.git_dir, incoming)
        soul.new_pin = (f"refs/tags/{tag}", raw, incoming)

    # --- phase 2: what the workspace needs ---

    def _open_workspace(self, soul):
        try:
            fd = open_path_nofollow(soul.entry["workspace"])
        except FileNotFoundError:
            if not self.check_mode:
                soul.problem(f"workspace {soul.entry['workspace']} does not exist")
            return None
        except OSError as exc:
            soul.problem(f"workspace {soul.entry['workspace']}: a component is a symlink or not a directory "
                         f"({exc.strerror}); not followed")
            return None
        st = os.fstat(fd)
        if soul.uid is not None and st.st_uid not in (soul.uid, 0):
            os.close(fd)
            soul.problem(f"workspace {soul.entry['workspace']} is owned by uid {st.st_uid}, not {soul.entry['owner']}")
            return None
        return Workspace(fd, soul.uid, soul.gid)

    def _wanted(self, soul):
        """{rel_path: (data, mode)} of the soul files that go into the workspace."""
        wanted = {}
        for mode, kind, oid, path in soul.entries:
            if kind == "blob" and installable(path):
                wanted[path] = (soul.blobs[oid], EXEC_MODE if mode == "100755" else FILE_MODE)
        return wanted

    def _plan(self, soul):
        workspace = self._open_workspace(soul)
        if soul.problems:
            return
        wanted = self._wanted(soul)
        try:
            for path, (data, mode) in sorted(wanted.items()):
                before = self._differs(soul, workspace, path, data, mode)
                if before is not False:
                    soul.actions.append((path, "write"))
                    soul.changed_files.append(path)
                    soul.diffs.append({
                        "before_header": f"{soul.agent}: {path}",
                        "after_header": f"{soul.agent}: {path} ({soul.commit[:12]})",
                        "before": before,
                        "after": _text(data) if len(data) <= MAX_DIFF_BYTES and _text(data) is not None
                        else f"(binary or large file, {len(data)} bytes)\n",
                    })
            for path, oid in sorted(soul.previous_tree.items()):
                if path not in wanted and workspace and self._still_previous(soul, workspace, path, oid):
                    soul.actions.append((path, "remove"))
                    soul.removed_files.append(path)
                    soul.diffs.append({"before_header": f"{soul.agent}: {path}", "after_header": f"{soul.agent}: "
                                       f"{path} (removed: no longer in the soul)", "before": "", "after": ""})
        except OSError as exc:
            soul.problem(f"workspace {soul.entry['workspace']}: {exc.filename}: {exc.strerror}")
        finally:
            if workspace:
                workspace.close()

    def _differs(self, soul, workspace, path, data, mode):
        """False when the workspace file is the soul's, else the diff's before text."""
        if workspace is None:
            return ""
        rel_dir, _slash, name = path.rpartition("/")
        dir_fd = workspace.open_dir(rel_dir, create=False)
        if dir_fd is None:
            return ""
        try:
            kind, st, content = workspace.probe(dir_fd, name, max(len(data), MAX_DIFF_BYTES))
        finally:
            os.close(dir_fd)
        if kind == "missing":
            return ""
        if kind == "directory":
            raise OSError(errno.EISDIR, "is a directory where the soul has a file: remove it", path)
        if kind != "file":
            return f"({kind} planted where the soul file goes: replaced, not followed)\n"
        if content is None:
            return "(a hard-linked or large file: replaced, not read)\n"
        if (content == data and st.st_uid == soul.uid and st.st_gid == soul.gid
                and stat.S_IMODE(st.st_mode) == mode):
            return False
        if content == data:
            return f"(owner {st.st_uid}:{st.st_gid} mode {stat.S_IMODE(st.st_mode):04o}; content unchanged)\n"
        text = _text(content)
        if text is None or len(content) > MAX_DIFF_BYTES:
            return f"(binary or large file, {len(content)} bytes)\n"
        return text

    def _still_previous(self, soul, workspace, path, oid):
        """Whether path still holds what the previous version installed (the agent did not make it its own)."""
        rel_dir, _slash, name = path.rpartition("/")
        dir_fd = workspace.open_dir(rel_dir, create=False)
        if dir_fd is None:
            return False
        try:
            kind, st, content = workspace.probe(dir_fd, name, 16 * 1024 * 1024)
        finally:
            os.close(dir_fd)
        algorithm = "sha1" if len(oid) == 40 else "sha256"
        return kind == "file" and content is not None and blob_oid(content, algorithm) == oid and \
            st.st_uid == soul.uid

    # --- phase 3: write ---

    def _apply(self, soul):
        wanted = self._wanted(soul)
        workspace = self._open_workspace(soul)
        if workspace is None:
            return
        try:
            for path, action in soul.actions:
                rel_dir, _slash, name = path.rpartition("/")
                try:
                    dir_fd = workspace.open_dir(rel_dir, create=action == "write")
                    if dir_fd is None:
                        continue
                    try:
                        if action == "write":
                            data, mode = wanted[path]
                            workspace.write(dir_fd, name, data, mode)
                        else:
                            workspace.unlink(dir_fd, name)
                    finally:
                        os.close(dir_fd)
                except OSError as exc:
                    soul.problem(f"{path}: {exc.strerror}; not installed")
        finally:
            workspace.close()
        if soul.problems:
            return
        try:
            # HEAD records what the workspace was installed from: moved only once every file is in place.
            if soul.commit != soul.previous:
                self.git.run(["-c", "advice.detachedHead=false", "checkout", "-q", "--force", "--detach",
                              soul.commit], soul.dest)
                head = self.git.rev(soul.dest, "HEAD")
                if head != soul.commit:
                    soul.problem(f"{soul.dest} is at {head} after checkout, not {soul.commit}")
                    return
            if soul.new_pin:
                ref, tag_object, incoming = soul.new_pin
                # The empty old value: create the pin, never overwrite one.
                self.git.run(["update-ref", ref, tag_object, ""], soul.dest)
                self.git.run(["update-ref", "-d", incoming], soul.dest)
        except GitError as exc:
            soul.problem(f"{soul.dest}: {exc}")
