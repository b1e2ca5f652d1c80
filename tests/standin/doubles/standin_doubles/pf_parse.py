"""pf.conf parser of the pfctl double, written after FreeBSD 14 sbin/pfctl/parse.y.

A hand-written lexer (yylex/lgetc of parse.y) and a recursive-descent parser
for the statements warden.fleet uses.  It returns the parsed ruleset as plain
data (rules expanded the way expand_rule() expands lists: one rule per
interface x protocol x source x port x destination x port x user x group)
plus the messages pfctl would print.  Statements of pf.conf(5) outside this
subset raise :class:`Unsupported`, never pass silently.

Messages follow parse.y: yyerror() prints "FILE:LINE: message" and counts
an error; after a syntax error the parser skips to the end of the line
(the `grammar error '\\n'` rule) and goes on, so every bad line is reported.
"""

import ipaddress

from . import pf_names, pf_print

# parse.y lookup(): words that are keywords, not STRINGs (FreeBSD 14 list,
# the ones the lexer must not hand to the grammar as plain strings)
KEYWORDS = frozenset("""
all allow-opts altq anchor antispoof any bandwidth binat binat-anchor bitmask block
block-policy buckets cbq code codelq crop debug divert-reply divert-to dnpipe dnqueue drop
drop-ovl dup-to ether fail-policy fairq fastroute file fingerprints flags floating flush for
fragment from global group hfsc hogs hostid icmp-type icmp6-type if-bound in include inet inet6
interval keep keepcounters l3 label limit linkshare load log loginterface map-e-portset match
max max-mss max-pkt-rate max-src-conn max-src-conn-rate max-src-nodes max-src-states min-ttl
modulate nat nat-anchor no no-df no-route no-sync on once optimization os out overload pass
pflow port prio priority priq probability proto qlimit queue quick random random-id rdr
rdr-anchor realtime reassemble reply-to require-order return return-icmp return-icmp6
return-rst ridentifier round-robin route route-to rtable rule ruleset-optimization scrub set
set-tos skip sloppy source-hash source-track state state-defaults state-policy static-port
sticky-address syncookies synproxy table tag tagged target tbrsize timeout to tos ttl
upperlimit urpf-failed user
""".split())  # noqa: SIM905

# parse.y check_rulestate(): statement kinds in the order pf.conf must keep
ST_NONE, ST_OPTION, ST_ETHER, ST_SCRUB, ST_QUEUE, ST_NAT, ST_FILTER = range(7)
ORDER_MSG = ("Rules must be in order: options, ethernet, normalization, queueing, "
             "translation, filtering")

# pfctl.c pf_timeouts[] and pf_limits[] names accepted by `set timeout/limit`
TIMEOUTS = ("tcp.first", "tcp.opening", "tcp.established", "tcp.closing", "tcp.finwait",
            "tcp.closed", "tcp.tsdiff", "sctp.first", "sctp.opening", "sctp.established",
            "sctp.closing", "sctp.closed", "udp.first", "udp.single", "udp.multiple",
            "icmp.first", "icmp.error", "other.first", "other.single", "other.multiple",
            "frag", "interval", "adaptive.start", "adaptive.end", "src.track")
LIMITS = ("states", "src-nodes", "frags", "table-entries", "anchors", "eth-anchors")
PF_TABLE_NAME_SIZE = 32
PF_ANCHOR_NAME_SIZE = 64
PF_RULE_LABEL_SIZE = 64
IFNAMSIZ = 16
TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
UID_MAX = 4294967295


class Unsupported(Exception):
    """A pf.conf construct this double does not model (pfctl exits 64)."""


class _SyntaxError(Exception):
    """Abort the current statement; the message is already recorded."""


class Tok:
    __slots__ = ("kind", "value", "line")

    def __init__(self, kind, value, line):
        self.kind, self.value, self.line = kind, value, line

    def __repr__(self):
        return f"Tok({self.kind},{self.value!r},{self.line})"


def _allowed_in_string(c):
    # parse.y allowed_in_string(): alnum, or punctuation other than ( ) { } < > ! = / # ,
    return c.isalnum() or (c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" and c not in "(){}<>!=/#,")


def _allowed_to_end_number(c):
    # parse.y allowed_to_end_number(): space, ')', ',', '/', '}', '='
    return c.isspace() or c in "),/}="


class Lexer:
    """parse.y yylex()/lgetc(): macros expand while reading, `\\` joins lines."""

    def __init__(self, text, name, macros, errors):
        self.text, self.pos, self.name = text, 0, name
        self.line = 1
        self.macros = macros
        self.errors = errors
        self.parsebuf = None   # the value of a macro being read (not re-expanded)

    def _getc(self, quoted=False):
        if self.parsebuf:
            c = self.parsebuf[0]
            self.parsebuf = self.parsebuf[1:]
            return c
        self.parsebuf = None
        if quoted:
            if self.pos >= len(self.text):
                return None
            c = self.text[self.pos]
            self.pos += 1
            return c
        while self.text.startswith("\\\n", self.pos):   # line continuation (lgetc)
            self.pos += 2
            self.line += 1
        if self.pos >= len(self.text):
            return None
        c = self.text[self.pos]
        self.pos += 1
        return c

    def _ungetc(self, c):
        if c is None:
            return
        if self.parsebuf is not None:
            self.parsebuf = c + self.parsebuf
        else:
            self.pos -= 1

    def error(self, line, msg):
        self.errors.append(f"{self.name}:{line}: {msg}")

    def next(self):
        while True:
            c = self._getc()
            while c in (" ", "\t"):
                c = self._getc()
            line = self.line
            if c == "#":
                while c not in ("\n", None):
                    c = self._getc()
            if c == "$" and self.parsebuf is None:
                name = ""
                c = self._getc()
                while c is not None and (c.isalnum() or c == "_"):
                    name += c
                    c = self._getc()
                self._ungetc(c)
                if name not in self.macros:
                    # parse.y: yyerror("macro '%s' not defined"), findeol()
                    self.error(line, f"macro '{name}' not defined")
                    self.skip_line()
                    return Tok("ERROR", None, line)
                self.parsebuf = self.macros[name] or None
                continue
            break
        if c in ('"', "'"):
            quote, buf = c, ""
            while True:
                c = self._getc(quoted=True)
                if c is None:
                    self.error(line, "reached end of file while parsing quoted string")
                    return Tok("EOF", None, self.line)
                if c == "\n":
                    self.line += 1
                    continue
                if c == "\\":
                    nxt = self._getc(quoted=True)
                    if nxt == quote:
                        c = nxt
                    elif nxt == "\n":
                        self.line += 1
                        continue
                    else:
                        self._ungetc(nxt)
                elif c == quote:
                    break
                buf += c
            return Tok("STRING", buf, line)
        if c == "<":
            nxt = self._getc()
            if nxt == ">":
                return Tok("PORTBINARY", "<>", line)
            self._ungetc(nxt)
        elif c == ">":
            nxt = self._getc()
            if nxt == "<":
                return Tok("PORTBINARY", "><", line)
            self._ungetc(nxt)
        elif c == "-":
            nxt = self._getc()
            if nxt == ">":
                return Tok("ARROW", "->", line)
            self._ungetc(nxt)
        if c is not None and (c == "-" or c.isdigit()):
            buf = c
            c = self._getc()
            while c is not None and c.isdigit():
                buf += c
                c = self._getc()
            self._ungetc(c)
            if buf != "-" and (c is None or _allowed_to_end_number(c)):
                return Tok("NUMBER", int(buf), line)
            # not a number: give the characters back and read a string
            for ch in reversed(buf[1:]):
                self._ungetc(ch)
            c = buf[0]
            if c == "-":
                return Tok("CHAR", "-", line)
        if c is not None and (c.isalnum() or c in ":_"):
            buf = c
            c = self._getc()
            while c is not None and _allowed_in_string(c):
                buf += c
                c = self._getc()
            self._ungetc(c)
            if buf in KEYWORDS:
                return Tok("KW", buf, line)
            return Tok("STRING", buf, line)
        if c == "\n":
            self.line += 1
            return Tok("NL", "\n", line)
        if c is None:
            return Tok("EOF", None, line)
        return Tok("CHAR", c, line)

    def skip_line(self):
        """parse.y findeol(): drop the rest of the current line."""
        self.parsebuf = None
        while True:
            c = self._getc()
            if c is None:
                return
            if c == "\n":
                self.line += 1
                return


def _any():
    return {"type": "any"}


class Context:
    """What the parser needs from the (stand-in) host: interfaces and files."""

    def __init__(self, interfaces=None, etc="/etc", fibs=1, read_file=None):
        # interfaces: name -> {"inet": ["A/N", ...], "groups": [...]}
        self.interfaces = interfaces or {}
        self.etc = etc
        self.fibs = fibs
        self.read_file = read_file or _read_file

    def iface_exists(self, name):
        if name in self.interfaces:
            return True
        return any(name in i.get("groups", []) for i in self.interfaces.values())

    def iface_addrs(self, name, network=False):
        """ifa_lookup(): addresses of an interface, a group or `self`."""
        found = []
        for n, i in self.interfaces.items():
            if name not in ("self", n) and name not in i.get("groups", []):
                continue
            for a in i.get("inet", []):
                iface = ipaddress.ip_interface(a)
                found.append(iface.network if network else ipaddress.ip_network(iface.ip))
        return found


def _read_file(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


class Parser:
    """One pf.conf (and its includes) into a ruleset for one anchor."""

    def __init__(self, ctx, anchor=""):
        self.ctx = ctx
        self.anchor = anchor
        self.errors = []       # "FILE:LINE: msg" lines (and bare stderr lines)
        self.macros = {}
        self.state = ST_NONE
        self.require_order = True
        self.block_policy = "drop"
        # "verbose": what pfctl -v prints while parsing (macros, tables, some options)
        self.ruleset = {"options": {}, "tables": {}, "scrub": [], "nat": [], "rdr": [],
                        "binat": [], "rules": [], "loads": [], "verbose": []}
        self.lex = None
        self.tok = None
        self.files = []

    # ---------------------------------------------------------------- tokens
    def advance(self):
        self.tok = self.lex.next()
        return self.tok

    def fail(self, msg="syntax error", line=None):
        if line is None:
            # yacc reports a statement cut short by EOF on the statement's line
            line = self.tok.line if self.tok.kind != "EOF" else self.lex.line - (
                1 if self.lex.text.endswith("\n") else 0)
        self.lex.error(line, msg)
        raise _SyntaxError()

    def warn(self, msg):
        """A message pfctl prints without file and line (fprintf in pfctl_parser.c)."""
        self.errors.append(msg)

    def is_kw(self, *words):
        return self.tok.kind == "KW" and self.tok.value in words

    def is_char(self, c):
        return self.tok.kind == "CHAR" and self.tok.value == c

    def accept_kw(self, *words):
        if self.is_kw(*words):
            v = self.tok.value
            self.advance()
            return v
        return None

    def accept_char(self, c):
        if self.is_char(c):
            self.advance()
            return True
        return False

    def expect_kw(self, word):
        if not self.accept_kw(word):
            self.fail()

    def expect_char(self, c):
        if not self.accept_char(c):
            self.fail()

    def string(self):
        if self.tok.kind != "STRING":
            self.fail()
        v = self.tok.value
        self.advance()
        return v

    def number(self):
        """parse.y `number`: NUMBER, or a STRING atoul() accepts."""
        if self.tok.kind == "NUMBER":
            v = self.tok.value
            self.advance()
            return v
        if self.tok.kind == "STRING":
            s = self.tok.value
            self.advance()
            if s.isdigit():
                return int(s)
            self.fail(f"{s} is not a number")
        self.fail()

    def optnl(self):
        while self.tok.kind == "NL":
            self.advance()

    def comma(self):
        # parse.y `comma: ',' optnl | /* empty */`
        self.accept_char(",")
        self.optnl()

    def unsupported(self, what):
        raise Unsupported(what)

    # ---------------------------------------------------------------- files
    def parse_file(self, text, name):
        saved = (self.lex, self.tok)
        self.lex = Lexer(text, name, self.macros, self.errors)
        self.advance()
        while self.tok.kind != "EOF":
            if self.tok.kind in ("NL", "ERROR"):
                self.advance()
                continue
            try:
                self.statement()
            except _SyntaxError:
                if self.tok.kind not in ("NL", "EOF", "ERROR"):
                    self.lex.skip_line()
                self.advance()
        self.lex, self.tok = saved
        return self.ruleset

    def end_of_statement(self):
        if self.tok.kind not in ("NL", "EOF"):
            self.fail()

    # ---------------------------------------------------------------- statements
    def statement(self):
        t = self.tok
        if t.kind == "STRING":
            return self.varset()
        if t.kind != "KW":
            self.fail()
        word = t.value
        if word == "include":
            return self.include()
        if word == "set":
            return self.option()
        if word == "table":
            return self.table()
        if word == "scrub":
            return self.scrub()
        if word in ("nat", "rdr", "binat", "no"):
            return self.natrule()
        if word in ("nat-anchor", "rdr-anchor", "binat-anchor", "anchor"):
            return self.anchorrule()
        if word == "load":
            return self.loadrule()
        if word in ("pass", "block", "match"):
            return self.pfrule()
        if word in ("antispoof", "altq", "queue", "ether"):
            self.unsupported(f"pf.conf statement '{word}'")
        self.fail()

    def check_rulestate(self, wanted):
        if self.require_order and self.state > wanted:
            self.lex.error(self.tok.line, ORDER_MSG)
            raise _SyntaxError()
        self.state = wanted

    def varset(self):
        # parse.y varset: STRING '=' varstring (strings and numbers joined by spaces)
        name = self.string()
        self.expect_char("=")
        parts = []
        while self.tok.kind in ("STRING", "NUMBER"):
            parts.append(str(self.tok.value))
            self.advance()
        if not parts:
            self.fail()
        self.end_of_statement()
        self.macros[name] = " ".join(parts)
        self.ruleset["verbose"].append(f'{name} = "{self.macros[name]}"')

    def include(self):
        self.advance()
        path = self.string()
        self.end_of_statement()
        try:
            text = self.ctx.read_file(path)
        except OSError as exc:
            # parse.y include: pushfile() warn()s, then yyerror("failed to include file %s")
            self.warn(f"pfctl: {path}: {exc.strerror}")
            self.fail(f"failed to include file {path}")
        line_tok = self.tok
        self.parse_file(text, path)
        self.tok = line_tok

    # ---------------------------------------------------------------- set
    def option(self):
        self.advance()
        self.check_rulestate(ST_OPTION)
        opts = self.ruleset["options"]
        w = self.tok.value if self.tok.kind in ("KW", "STRING") else None
        self.advance()
        if w == "skip":
            self.expect_kw("on")
            names = [i["name"] for i in self.interface_list()]
            # parse.y expand_skip_interface(): "set skip on { lo0 }" under -v
            self.ruleset["verbose"].append("set skip on {" + "".join(" " + n for n in names) + " }")
            opts.setdefault("skip", [])
            opts["skip"] += [n for n in names if n not in opts["skip"]]
        elif w == "block-policy":
            v = self.accept_kw("drop", "return")
            if not v:
                self.fail()
            self.block_policy = v
            opts["block-policy"] = v
            self.ruleset["verbose"].append(f"set block-policy {v}")
        elif w == "state-policy":
            v = self.accept_kw("if-bound", "floating")
            if not v:
                self.fail()
            opts["state-policy"] = v
        elif w == "optimization":
            v = self.string()
            if v not in ("normal", "high-latency", "satellite", "aggressive", "conservative"):
                self.fail(f"unknown optimization {v}")
            opts["optimization"] = v
        elif w == "ruleset-optimization":
            v = self.string()
            if v not in ("none", "basic", "profile"):
                self.fail(f"unknown ruleset-optimization {v}")
            opts["ruleset-optimization"] = v
        elif w == "loginterface":
            opts["loginterface"] = self.string()
        elif w == "debug":
            v = self.string()
            if v not in ("none", "urgent", "misc", "loud"):
                # pfctl.c pfctl_set_debug(): warnx, then parse.y yyerror
                self.warn(f'pfctl: unknown debug level "{v}"')
                self.fail("error setting debug")
            opts["debug"] = v
        elif w == "hostid":
            opts["hostid"] = self.number()
        elif w == "require-order":
            v = self.yesno()
            self.require_order = v == "yes"
            opts["require-order"] = v
        elif w == "limit":
            opts.setdefault("limit", {}).update(self.name_values(LIMITS, "limit"))
        elif w == "timeout":
            opts.setdefault("timeout", {}).update(self.name_values(TIMEOUTS, "timeout"))
        elif w == "reassemble":
            v = self.yesno()
            opts["reassemble"] = v + (" no-df" if self.accept_kw("no-df") else "")
        elif w == "keepcounters":
            opts["keepcounters"] = True
        elif w in ("fingerprints", "state-defaults", "syncookies", "fail-policy"):
            self.unsupported(f"set {w}")
        else:
            self.fail()
        self.end_of_statement()

    def yesno(self):
        # parse.y yesno: NO | STRING "yes"; "no" is a keyword, "yes" is not
        if self.accept_kw("no"):
            return "no"
        v = self.string()
        if v != "yes":
            self.fail(f"invalid value '{v}', expected 'yes' or 'no'")
        return v

    def name_values(self, known, what):
        """`set limit states 1000` or `set limit { states 1000, frags 100 }`."""
        pairs = {}

        def one():
            name = self.tok.value if self.tok.kind in ("KW", "STRING") else None
            self.advance()
            if name not in known:
                # pfctl.c pfctl_set_limit/pfctl_set_timeout: warnx then yyerror
                self.warn("pfctl: Bad pool name." if what == "limit" else "pfctl: Bad timeout name.")
                self.fail(f"unable to set {what} {name}")
            pairs[name] = self.number()

        if self.accept_char("{"):
            self.optnl()
            while not self.is_char("}"):
                one()
                self.comma()
            self.advance()
        else:
            one()
        return pairs

    # ---------------------------------------------------------------- tables
    def table(self):
        # parse.y tabledef: TABLE '<' STRING '>' table_opts
        self.advance()
        self.expect_char("<")
        name = self.string()
        self.expect_char(">")
        if len(name) >= PF_TABLE_NAME_SIZE:
            self.fail(f"table name too long, max {PF_TABLE_NAME_SIZE - 1} chars")
        flags, addrs, shown = [], [], []    # shown: the { } lists and files, for -v
        while self.tok.kind not in ("NL", "EOF"):
            if self.tok.kind == "STRING" and self.tok.value in ("persist", "const", "counters"):
                if self.tok.value not in flags:
                    flags.append(self.tok.value)
                self.advance()
            elif self.accept_kw("file"):
                path = self.string()
                try:
                    text = self.ctx.read_file(path)
                except OSError:
                    self.fail(f'cannot load "{path}"')
                for line in text.splitlines():
                    for word in line.split("#", 1)[0].split():
                        addrs += self.table_address(word)
                shown.append(f'file "{path}"')
            elif self.accept_char("{"):
                self.optnl()
                listed = []
                while not self.is_char("}"):
                    neg = self.accept_char("!")
                    if self.tok.kind not in ("STRING", "NUMBER"):
                        self.fail()
                    word = str(self.tok.value)
                    self.advance()
                    if self.accept_char("/"):
                        word += "/" + str(self.number())
                    listed += self.table_address(("!" if neg else "") + word)
                    self.comma()
                self.advance()
                addrs += listed
                if shown and isinstance(shown[-1], list):
                    shown[-1] += listed          # print_tabledef() merges adjacent lists
                else:
                    shown.append(listed)
            else:
                self.fail()
        if self.state > ST_FILTER:
            self.fail()
        if name in self.ruleset["tables"]:
            self.fail(f"table <{name}> redefined")
        unique = []
        for a in addrs:
            if a not in unique:
                unique.append(a)
        self.ruleset["tables"][name] = {"flags": flags, "addrs": unique}
        # pfctl_parser.c print_tabledef(): flags in const, persist, counters order
        text = f"table <{name}>" + "".join(f" {f}" for f in ("const", "persist", "counters") if f in flags)
        for item in shown:
            if isinstance(item, list):
                text += "".join(" " + a for a in item).join((" {", " }"))
            else:
                text += " " + item
        self.ruleset["verbose"].append(text)

    def table_address(self, word):
        """One table entry (pfctl_parser.c append_addr): prefixes only, host bits clear."""
        neg = word.startswith("!")
        spec = word.lstrip("!")
        hosts = self.resolve_host(spec)
        if hosts is None:
            self.fail("could not parse host specification")
        out = []
        for h in hosts:
            if h["bits"] > (32 if h["af"] == "inet" else 128):
                # pfctl_parser.c append_addr_host(): EINVAL; parse.y process_tabledef()
                self.fail("cannot create address buffer: Invalid argument")
            out.append(("!" if neg else "") + _fmt_host(h))
        return out

    def resolve_host(self, spec):
        """pfctl_parser.c host(): interface or group, IP literal (with prefix), /etc/hosts.

        Returns a list of {"addr", "bits", "af"}, the address masked with its
        prefix as set_ipmask() does ("1.2.3.4/25" is 1.2.3.0/25), or None when
        nothing matched; the message pfctl prints for that is already recorded.
        """
        base, slash, bits = spec.partition("/")
        if slash:
            if not bits.isdigit() or int(bits) > 128:
                self.warn(f"invalid netmask '/{bits}'")
                return None
            bits = int(bits)
        else:
            bits = None
        ifname, modifier = base.partition(":")[::2]
        if base[:1].isalpha() and (self.ctx.iface_exists(ifname) or ifname == "self") and \
                modifier in ("network", "broadcast", "peer", "0", ""):
            if modifier in ("network", "broadcast") and bits is not None:
                self.warn("network or broadcast lookup, but extra netmask given")
                return None
            if modifier in ("broadcast", "peer"):
                self.unsupported(f"interface modifier :{modifier}")
            nets = self.ctx.iface_addrs(ifname, network=modifier == "network")
            return [{"addr": str(n.network_address), "af": "inet" if n.version == 4 else "inet6",
                     "bits": n.prefixlen if bits is None else bits} for n in nets]
        try:
            addr = ipaddress.ip_address(base)
        except ValueError:
            addr = None
            octets = base.split(".")
            if bits is not None and len(octets) < 4 and all(o.isdigit() and int(o) < 256 for o in octets):
                # pfctl_parser.c host_ip(): "10/8" goes through inet_net_pton(3)
                addr = ipaddress.ip_address(".".join([str(int(o)) for o in octets] + ["0"] * (4 - len(octets))))
        if addr is None and bits is None and base[:1].isalpha():
            found = pf_names.hosts_lookup(base, self.ctx.etc)
            if found:
                return [{"addr": a, "af": "inet6" if ":" in a else "inet",
                         "bits": 128 if ":" in a else 32} for a in found]
        if addr is None:
            self.warn(f"no IP address found for {spec}")
            return None
        width = 32 if addr.version == 4 else 128
        if bits is None:
            bits = width
        if bits <= width:
            addr = ipaddress.ip_network(f"{addr}/{bits}", strict=False).network_address
        return [{"addr": str(addr), "af": "inet" if addr.version == 4 else "inet6", "bits": bits}]

    # ---------------------------------------------------------------- hosts
    def host_spec(self):
        """parse.y ipspec: any | xhost | '{' host_list '}' -> list of address dicts."""
        if self.accept_kw("any"):
            return [_any()]
        if self.accept_char("{"):
            self.optnl()
            hosts = []
            while not self.is_char("}"):
                if self.tok.kind == "EOF":
                    self.fail()
                hosts += self.xhost()
                self.comma()
            self.advance()
            if not hosts:
                self.fail()
            return hosts
        return self.xhost()

    def xhost(self):
        # parse.y xhost: not host | not NOROUTE | not URPFFAILED
        neg = False
        while self.accept_char("!"):
            neg = not neg
        if self.accept_kw("no-route"):
            return [{"type": "noroute", "neg": neg}]
        if self.accept_kw("urpf-failed"):
            return [{"type": "urpf", "neg": neg}]
        hosts = self.host()
        for h in hosts:
            h["neg"] = neg
        return hosts

    def host(self):
        t = self.tok
        if self.accept_char("<"):
            name = self.string()
            self.expect_char(">")
            if len(name) >= PF_TABLE_NAME_SIZE:
                self.fail(f"table name '{name}' too long")
            return [{"type": "table", "name": name}]
        if self.accept_char("("):
            return [self.dynaddr()]
        if t.kind not in ("STRING", "NUMBER"):
            self.fail()
        spec = str(t.value)
        self.advance()
        if self.accept_char("/"):
            spec += "/" + str(self.number())
        hosts = self.resolve_host(spec)
        if hosts is None:
            self.fail("could not parse host specification")
        return [{"type": "net", "addr": h["addr"], "bits": h["bits"], "af": h["af"]} for h in hosts]

    def dynaddr(self):
        # parse.y dynaddr: '(' STRING ')' with :network :broadcast :peer :0
        # (FreeBSD does not check that the interface exists: #ifndef __FreeBSD__)
        name = self.string()
        self.expect_char(")")
        if not name[:1].isalpha():
            self.fail(f"invalid interface name '{name}'")
        ifname, *mods = name.split(":")
        for m in mods:
            if m not in ("network", "broadcast", "peer", "0"):
                self.fail(f"interface {name} has bad modifier")
        if "broadcast" in mods or "peer" in mods:
            self.unsupported(f"dynamic address ({name})")
        if len(set(mods) & {"network", "broadcast", "peer"}) > 1:
            self.fail("illegal combination of interface modifiers")
        host = {"type": "dynif", "ifname": ifname, "mods": mods}
        if self.accept_char("/"):
            bits = self.number()
            if bits > 128:
                self.fail("bit number too big")
            host["bits"] = bits
        return host

    # ---------------------------------------------------------------- ports
    def port_spec(self):
        """parse.y portspec: port_item | '{' port_list '}' -> list of port dicts."""
        if self.accept_char("{"):
            self.optnl()
            ports = []
            while not self.is_char("}"):
                ports.append(self.port_item())
                self.comma()
            self.advance()
            if not ports:
                self.fail()
            return ports
        return [self.port_item()]

    def unary_op(self):
        # parse.y unaryop: '=' | '!' '=' | '<' '=' | '<' | '>' '=' | '>'
        if self.accept_char("="):
            return "="
        if self.accept_char("!"):
            self.expect_char("=")
            return "!="
        if self.accept_char("<"):
            return "<=" if self.accept_char("=") else "<"
        if self.accept_char(">"):
            return ">=" if self.accept_char("=") else ">"
        return None

    def port_value(self, allow_range):
        """parse.y parseport()/getservice(): a number, a service name or a:b."""
        if self.tok.kind == "NUMBER":
            v = self.tok.value
            self.advance()
            return self.check_port(v), None
        if self.tok.kind != "STRING":
            self.fail()
        s = self.tok.value
        self.advance()
        if ":" in s:
            if not allow_range:
                self.fail()
            a, b = s.partition(":")[::2]
            if b == "*":
                self.unsupported("port a:*")
            pa, pb = self.service(a), self.service(b)
            return pa, (None if pa == pb else pb)
        return self.service(s), None

    def check_port(self, v):
        if v < 0 or v > 65535:
            self.fail(f"illegal port value {v}")
        return v

    def service(self, s):
        if s.isdigit():
            return self.check_port(int(s))
        if s not in pf_names.SERVICES:
            self.fail(f"unknown port {s}")
        return pf_names.SERVICES[s]

    def port_item(self):
        op = self.unary_op()
        if op:
            a, b = self.port_value(False)
            return {"op": op, "a": a}
        a, b = self.port_value(True)
        if self.tok.kind == "PORTBINARY":
            op = self.tok.value
            self.advance()
            b = self.port_value(False)[0]
            return {"op": op, "a": a, "b": b}
        if b is not None:
            return {"op": ":", "a": a, "b": b}
        return {"op": "=", "a": a}

    # ---------------------------------------------------------------- rule parts
    def interface_list(self):
        """parse.y interface: ON if_item_not | ON '{' if_list '}'."""
        def item():
            neg = self.accept_char("!")
            name = self.string()
            if len(name) >= IFNAMSIZ:
                self.fail("interface name too long")
            return {"name": name, "neg": neg}

        if self.accept_char("{"):
            self.optnl()
            items = []
            while not self.is_char("}"):
                items.append(item())
                self.comma()
            self.advance()
            if not items:
                self.fail()
            return items
        return [item()]

    def proto_list(self):
        def item():
            if self.tok.kind == "NUMBER":
                v = self.tok.value
                self.advance()
            else:
                name = self.string()
                if name.isdigit():
                    v = int(name)
                elif name in pf_names.PROTOCOLS:
                    v = pf_names.PROTOCOLS[name]
                else:
                    self.fail(f"unknown protocol {name}")
            if v > 255:
                self.fail("protocol outside range")
            if v == 0:
                self.fail("proto 0 cannot be used")
            return v

        if self.accept_char("{"):
            self.optnl()
            items = []
            while not self.is_char("}"):
                items.append(item())
                self.comma()
            self.advance()
            return items
        return [item()]

    def fromto(self):
        """parse.y fromto: ALL | from os to (both halves optional)."""
        r = {"src": [_any()], "src_port": [None], "dst": [_any()], "dst_port": [None]}
        if self.accept_kw("all"):
            return r
        if self.accept_kw("from"):
            r["src"], r["src_port"] = self.ipportspec()
        if self.is_kw("os"):
            self.unsupported("os fingerprints")
        if self.accept_kw("to"):
            r["dst"], r["dst_port"] = self.ipportspec()
        return r

    def ipportspec(self):
        # parse.y ipportspec: ipspec | ipspec PORT portspec | PORT portspec
        hosts = [_any()]
        if not self.is_kw("port"):
            hosts = self.host_spec()
        ports = [None]
        if self.accept_kw("port"):
            ports = self.port_spec()
        return hosts, ports

    def ugid_list(self, kind):
        """parse.y uids/gids: user/group names or numbers with operators."""
        def value():
            if self.tok.kind == "NUMBER":
                v = self.tok.value
                self.advance()
                return v
            name = self.string()
            if name == "unknown":
                return UID_MAX      # parse.y uid/gid: "unknown" is UID_MAX (GID_MAX)
            found = (pf_names.user_id if kind == "user" else pf_names.group_id)(name, self.ctx.etc)
            if found is None:
                self.fail(f"unknown {kind} {name}")
            return found

        def item():
            op = self.unary_op()
            a = value()
            if op:
                return {"op": op, "a": a}
            if self.tok.kind == "PORTBINARY":
                op = self.tok.value
                self.advance()
                return {"op": op, "a": a, "b": value()}
            return {"op": "=", "a": a}

        if self.accept_char("{"):
            self.optnl()
            items = []
            while not self.is_char("}"):
                items.append(item())
                self.comma()
            self.advance()
            return items
        return [item()]

    def flags_value(self):
        # parse.y flags: FLAGS flag '/' flag | FLAGS '/' flag | FLAGS ANY
        if self.accept_kw("any"):
            return "any"
        first = ""
        if self.tok.kind == "STRING":
            first = self.string()
        self.expect_char("/")
        second = self.string()
        for f in (first, second):
            if any(c not in "FSRPAUEW" for c in f):
                self.fail(f"bogus flags {f}")
        # print_flags() writes the bits in FSRPAUEW order, whatever order was given

        def canonical(f):
            return "".join(c for c in "FSRPAUEW" if c in f)
        return f"{canonical(first)}/{canonical(second)}"

    def icmp_list(self, six):
        table = pf_names.ICMP6_TYPES if six else pf_names.ICMP_TYPES

        def item():
            if self.tok.kind == "NUMBER":
                t = self.tok.value
                self.advance()
                if t > 255:
                    self.fail(f"illegal icmp-type {t}")
            else:
                name = self.string()
                if name not in table:
                    self.fail(f"unknown icmp{'6' if six else ''}-type {name}")
                t = table[name]
            if self.is_kw("code"):
                self.unsupported("icmp-type ... code")
            return t

        if self.accept_char("{"):
            self.optnl()
            items = []
            while not self.is_char("}"):
                items.append(item())
                self.comma()
            self.advance()
            return items
        return [item()]

    def state_opts(self):
        """parse.y state_opt_list inside `keep state ( ... )`."""
        opts = {}
        self.expect_char("(")
        self.optnl()
        while not self.is_char(")"):
            w = self.tok.value if self.tok.kind in ("KW", "STRING") else None
            self.advance()
            if w in ("max", "max-src-states", "max-src-nodes", "max-src-conn"):
                opts[w] = self.number()
            elif w == "max-src-conn-rate":
                n = self.number()
                self.expect_char("/")
                opts[w] = f"{n}/{self.number()}"
            elif w == "overload":
                self.expect_char("<")
                table = self.string()
                self.expect_char(">")
                text = f"<{table}>"
                if self.accept_kw("flush"):
                    text += " flush"
                    if self.accept_kw("global"):
                        text += " global"
                opts["overload"] = text
            elif w == "source-track":
                v = self.accept_kw("rule", "global")
                opts["source-track"] = v or "rule"
            elif w in ("if-bound", "floating", "sloppy", "no-sync"):
                opts[w] = True
            elif w in TIMEOUTS:
                opts.setdefault("timeouts", {})[w] = self.number()
            elif w in ("pflow", "allow-related"):
                self.unsupported(f"state option {w}")
            else:
                self.fail()
            self.comma()
        self.advance()
        return opts

    def filter_opts(self, r, allow_state=True):
        """parse.y filter_opts: everything after from/to, in any order."""
        while self.tok.kind not in ("NL", "EOF"):
            if self.accept_kw("user"):
                r["users"] = self.ugid_list("user")
            elif self.accept_kw("group"):
                r["groups"] = self.ugid_list("group")
            elif self.accept_kw("flags"):
                r["flags"] = self.flags_value()
            elif self.accept_kw("icmp-type"):
                r["icmp_types"], r["icmp_proto"] = self.icmp_list(False), ICMP
            elif self.accept_kw("icmp6-type"):
                r["icmp_types"], r["icmp_proto"] = self.icmp_list(True), ICMP6
            elif allow_state and self.is_kw("keep", "modulate", "synproxy", "no"):
                word = self.tok.value
                self.advance()
                self.expect_kw("state")
                if "state" in r:
                    self.fail("multiple state options")   # parse.y: "state options multiple"
                r["state"] = {"keep": "keep", "modulate": "modulate", "synproxy": "synproxy",
                              "no": None}[word]
                if word != "no" and self.is_char("("):
                    r["state_opts"] = self.state_opts()
            elif self.accept_kw("fragment"):
                r["fragment"] = True
            elif self.accept_kw("allow-opts"):
                r["allow_opts"] = True
            elif self.accept_kw("label"):
                label = self.string()
                if len(label) >= PF_RULE_LABEL_SIZE:
                    self.fail(f"rule label too long (max {PF_RULE_LABEL_SIZE - 1} chars)")
                r.setdefault("labels", []).append(label)
            elif self.accept_kw("tag"):
                r["tag"] = self.string()
            elif self.is_char("!") or self.is_kw("tagged"):
                neg = self.accept_char("!")
                self.expect_kw("tagged")
                r["tagged"] = {"name": self.string(), "neg": neg}
            elif self.accept_kw("rtable"):
                n = self.number()
                if n < 0 or n > self.ctx.fibs - 1:
                    self.fail("invalid rtable id")
                r["rtable"] = n
            elif self.accept_kw("scrub"):
                r["scrub"] = self.scrub_opts(parenthesised=True)
            elif self.is_kw("tos", "probability", "queue", "prio", "set", "max-pkt-rate",
                            "divert-to", "divert-reply", "dnpipe", "dnqueue", "ridentifier",
                            "once", "route-to", "reply-to", "dup-to", "received-on"):
                self.unsupported(f"filter option '{self.tok.value}'")
            else:
                self.fail()

    def scrub_opts(self, parenthesised):
        """parse.y scrub_opts: no-df, min-ttl, max-mss, random-id, reassemble tcp, fragment."""
        opts = {}
        if parenthesised:
            self.expect_char("(")
        while self.tok.kind not in ("NL", "EOF") and not self.is_char(")"):
            if self.accept_kw("no-df"):
                opts["no-df"] = True
            elif self.accept_kw("min-ttl"):
                n = self.number()
                if n < 0 or n > 255:
                    self.fail(f"illegal min-ttl value {n}")
                opts["min-ttl"] = n
            elif self.accept_kw("max-mss"):
                n = self.number()
                if n < 0 or n > 65535:
                    self.fail(f"illegal max-mss value {n}")
                opts["max-mss"] = n
            elif self.accept_kw("random-id"):
                opts["random-id"] = True
            elif self.accept_kw("reassemble"):
                if self.string() != "tcp":
                    self.fail("scrub reassemble supports only tcp, not")
                opts["reassemble-tcp"] = True
            elif not parenthesised and self.accept_kw("fragment"):
                if self.accept_kw("reassemble"):
                    opts["fragment"] = "reassemble"
                elif self.is_kw("crop", "drop-ovl"):
                    self.unsupported(f"fragment {self.tok.value}")
                else:
                    self.fail()
            elif self.is_kw("set-tos"):
                self.unsupported("scrub set-tos")
            else:
                self.fail()
            if parenthesised:
                self.comma()
        if parenthesised:
            self.expect_char(")")
        return opts

    # ---------------------------------------------------------------- rules
    def rule_head(self, r, allow_dir=True, allow_quick=True, allow_log=True):
        """dir, log/quick, interface, af, proto in parse.y order."""
        if allow_dir:
            d = self.accept_kw("in", "out")
            if d:
                r["direction"] = d
        while allow_log and self.is_kw("log", "quick"):
            if self.accept_kw("log"):
                if self.is_char("("):
                    self.unsupported("log options")
                if r.get("log"):
                    self.fail()
                r["log"] = True
            elif allow_quick and self.accept_kw("quick"):
                if r.get("quick"):
                    self.fail()
                r["quick"] = True
            else:
                self.fail()
        if self.accept_kw("on"):
            r["interfaces"] = self.interface_list()
        if self.is_kw("route-to", "reply-to", "dup-to", "fastroute"):
            self.unsupported(f"routing option '{self.tok.value}'")
        af = self.accept_kw("inet", "inet6")
        if af:
            r["af"] = af
        if self.accept_kw("proto"):
            r["protos"] = self.proto_list()

    def pfrule(self):
        # parse.y pfrule: action dir logquick interface route af proto fromto filter_opts
        action = self.tok.value
        self.advance()
        r = {"action": action}
        if action == "block":
            spec = self.accept_kw("drop", "return", "return-rst", "return-icmp", "return-icmp6")
            if spec in ("return-rst", "return-icmp", "return-icmp6") and self.is_char("("):
                self.unsupported(f"block {spec} (...)")
            r["block"] = spec or self.block_policy
        self.check_rulestate(ST_FILTER)
        self.rule_head(r)
        r.update(self.fromto())
        self.filter_opts(r)
        self.end_of_statement()
        if action == "pass" and "state" not in r and not r.get("fragment"):
            r["state"] = "keep"     # FreeBSD >= 7: pass rules keep state by default
        if r.get("scrub") and action != "match":
            self.fail("scrub options require match")
        self.expand(r, "rules")

    def scrub(self):
        # parse.y scrubrule: scrubaction dir logquick interface af proto fromto scrub_opts
        self.advance()
        self.check_rulestate(ST_SCRUB)
        r = {"action": "scrub"}
        self.rule_head(r)
        r.update(self.fromto())
        r["scrub"] = self.scrub_opts(parenthesised=False)
        self.end_of_statement()
        self.expand(r, "scrub")

    def natrule(self):
        # parse.y natrule: nataction interface af proto fromto tag tagged rtable redirpool pool_opts
        no = self.accept_kw("no")
        kind = self.accept_kw("nat", "rdr", "binat")
        if not kind:
            self.fail()
        self.check_rulestate(ST_NAT)
        r = {"action": kind, "no": bool(no)}
        if not no and self.accept_kw("pass"):
            r["pass"] = True
            if self.accept_kw("log"):
                r["log"] = True
        self.rule_head(r, allow_dir=False, allow_quick=False, allow_log=False)
        if kind == "binat":
            r["src"], r["src_port"], r["dst"], r["dst_port"] = [_any()], [None], [_any()], [None]
            if self.accept_kw("from"):
                r["src"] = self.host_spec()
            if self.accept_kw("to"):
                r["dst"] = self.host_spec()
        else:
            r.update(self.fromto())
        while self.is_kw("tag", "tagged", "rtable") or self.is_char("!"):
            self.filter_opts_one_nat(r)
        if self.tok.kind == "ARROW":
            if no:
                self.fail("translation rule with 'no' does not need '->'")
            self.advance()
            r["redirect"] = self.host_spec()
            if self.accept_kw("port"):
                if kind == "binat":
                    self.fail()
                a, b = self.port_value(True)
                if self.is_char(":"):
                    self.fail()
                r["redirect_port"] = {"a": a, "b": b}
            r["pool_opts"] = self.pool_opts()
            if "static-port" in r["pool_opts"]:
                # parse.y natrule: static-port keeps the source port, so it takes no range
                if kind != "nat":
                    self.fail("the 'static-port' option is only valid with nat rules")
                if r.get("redirect_port"):
                    self.fail("the 'static-port' option can't be used when specifying a port range")
        elif not no:
            self.end_of_statement()
            self.fail("translation rule requires '-> address'")
        self.end_of_statement()
        self.expand(r, kind)

    def filter_opts_one_nat(self, r):
        if self.accept_kw("tag"):
            r["tag"] = self.string()
        elif self.accept_kw("rtable"):
            n = self.number()
            if n < 0 or n > self.ctx.fibs - 1:
                self.fail("invalid rtable id")
            r["rtable"] = n
        else:
            neg = self.accept_char("!")
            self.expect_kw("tagged")
            r["tagged"] = {"name": self.string(), "neg": neg}

    def pool_opts(self):
        opts = []
        while self.tok.kind not in ("NL", "EOF"):
            w = self.accept_kw("round-robin", "random", "source-hash", "bitmask", "static-port",
                               "sticky-address")
            if not w:
                if self.is_kw("map-e-portset"):
                    self.unsupported("map-e-portset")
                self.fail()
            if w == "source-hash" and self.tok.kind == "STRING":
                self.unsupported("source-hash key")
            if w in opts:
                self.fail()
            opts.append(w)
        return opts

    def anchorrule(self):
        # parse.y anchorrule: ANCHOR anchorname dir quick interface af proto fromto filter_opts
        kind = self.tok.value
        self.advance()
        name = None
        if self.tok.kind == "STRING":
            name = self.string()
        self.check_rulestate(ST_NAT if kind != "anchor" else ST_FILTER)
        if name is None:
            self.unsupported(f"{kind} without a name (inline anchor)")
        if name.startswith("_") or "/_" in name:
            self.fail("anchor names beginning with '_' are reserved for internal use")
        if name.endswith("*") and not (name == "*" or name.endswith("/*")):
            self.fail()
        r = {"action": kind, "anchor": name}
        self.rule_head(r, allow_dir=kind == "anchor", allow_quick=kind == "anchor",
                       allow_log=kind == "anchor")
        r.update(self.fromto())
        if kind == "anchor" and not self.is_char("{"):
            self.filter_opts(r, allow_state=False)
        if self.is_char("{"):
            self.unsupported("inline anchor rules { ... }")
        self.end_of_statement()
        target = {"anchor": "rules", "nat-anchor": "nat", "rdr-anchor": "rdr",
                  "binat-anchor": "binat"}[kind]
        self.expand(r, target)

    def loadrule(self):
        # parse.y loadrule: LOAD ANCHOR string FROM string
        self.advance()
        self.expect_kw("anchor")
        name = self.string()
        self.expect_kw("from")
        path = self.string()
        self.end_of_statement()
        if len(name) >= 1024:
            self.fail(f"anchorname {name} too long, max 1023")
        full = f"{self.anchor}/{name}" if self.anchor else name
        self.ruleset["loads"].append({"anchor": full, "file": path})

    # ---------------------------------------------------------------- expansion
    def expand(self, r, target):
        """parse.y expand_rule(): one kernel rule per combination of the lists."""
        interfaces = r.pop("interfaces", None) or [None]
        protos = r.pop("protos", None) or [None]
        users = r.pop("users", None) or [None]
        groups = r.pop("groups", None) or [None]
        icmp_types = r.pop("icmp_types", None) or [None]
        srcs, sports = r.pop("src"), r.pop("src_port")
        dsts, dports = r.pop("dst"), r.pop("dst_port")
        rules, problems = [], []
        for iface in interfaces:
            for proto in protos:
                for src in srcs:
                    for sport in sports:
                        for dst in dsts:
                            for dport in dports:
                                for uid in users:
                                    for gid in groups:
                                        for icmp in icmp_types:
                                            one = self.expand_one(r, iface, proto, src, sport, dst,
                                                                  dport, uid, gid, icmp, problems)
                                            if one is not None:
                                                rules.append(one)
        line = self.tok.line
        for msg in problems:
            if msg.startswith("!"):
                self.warn(msg[1:])
            else:
                self.lex.error(line, msg)
        if problems:
            self.lex.error(line, "skipping rule due to errors")
        if not rules:
            self.lex.error(line, "rule expands to no valid combination")
        if problems or not rules:
            raise _SyntaxError()
        self.ruleset[target] += rules

    def expand_one(self, r, iface, proto, src, sport, dst, dport, uid, gid, icmp, problems):
        mine = []
        rule = self._expand_one(r, iface, proto, src, sport, dst, dport, uid, gid, icmp, mine)
        problems += [m for m in mine if m not in problems]
        return None if mine else rule

    def _expand_one(self, r, iface, proto, src, sport, dst, dport, uid, gid, icmp, problems):
        af = r.get("af")
        for h in (src, dst):
            haf = h.get("af")
            if haf and af and haf != af:
                return None       # expand_rule skips mixed address families
            if haf and not af:
                af = haf
        for h in (src, dst):
            if h.get("type") == "net" and h["af"] == "inet" and h["bits"] > 32:
                problems.append(f"!netmask {h['bits']} invalid for IPv4 address")
        rule = {k: v for k, v in r.items() if k not in ("af",)}
        rule["af"] = af
        rule["ifname"] = iface["name"] if iface else None
        rule["ifnot"] = bool(iface and iface["neg"])
        rule["proto"] = proto
        rule["src"], rule["dst"] = dict(src), dict(dst)
        rule["src"].setdefault("neg", False)
        rule["dst"].setdefault("neg", False)
        rule["src_port"], rule["dst_port"] = sport, dport
        rule["user"], rule["group"] = uid, gid
        if icmp is not None:
            rule["icmp_type"] = icmp
        # rule_consistent()/filter_consistent(): the checks pfctl makes per rule
        if (sport or dport) and proto not in (TCP, UDP):
            problems.append("port only applies to tcp/udp")
        if r.get("icmp_proto") and proto != r["icmp_proto"]:
            problems.append("icmp-type mismatch")
        flags = r.get("flags")
        if flags and flags != "any" and proto not in (TCP, None):
            problems.append("flags only apply to tcp")
        if r.get("action") == "rdr" and rule.get("redirect_port") and proto not in (TCP, UDP):
            problems.append("port only applies to tcp/udp")
        if rule.get("state") in ("modulate", "synproxy") and proto not in (TCP, None):
            rule["state"] = "keep"
        # 'flags S/SA' by default on stateful pass rules that can match TCP
        if r.get("action") == "pass" and rule.get("state") and not flags and not r.get("fragment"):
            rule["flags"] = "S/SA" if proto in (TCP, None) else None
        elif flags == "any" or proto not in (TCP, None):
            rule["flags"] = None
        if r.get("action") in ("nat", "rdr", "binat") and not r.get("no"):
            pool = [dict(h) for h in r["redirect"]]
            for h in pool:
                h.setdefault("neg", False)
            pool_af = {h.get("af") for h in pool if h.get("af")}
            if af and pool_af and af not in pool_af:
                return None
            if not af and len(pool_af) > 1:
                problems.append("address family not given and translation address expands "
                                "to multiple address families")
            if not af and pool_af:
                rule["af"] = af = pool_af.pop()
            rule["redirect"] = pool
            opts = list(r.get("pool_opts", []))
            types = [o for o in opts if o in ("round-robin", "random", "source-hash", "bitmask")]
            # parse.y: a pool of several addresses, a table or an interface with
            # aliases defaults to round-robin
            if not types and (len(pool) > 1 or pool[0]["type"] == "table" or
                              (pool[0]["type"] == "dynif" and "0" not in pool[0]["mods"])):
                opts.insert(0, "round-robin")
            rule["pool_opts"] = opts
        rule["text"] = pf_print.render(rule)
        return rule


def _fmt_host(h):
    width = 32 if h["af"] == "inet" else 128
    return h["addr"] if h["bits"] == width else f"{h['addr']}/{h['bits']}"


def parse(text, name, ctx, anchor=""):
    """Parse pf.conf ``text``; return (ruleset, messages).  ``messages`` empty = valid."""
    p = Parser(ctx, anchor)
    p.parse_file(text, name)
    return p.ruleset, p.errors


def context_from_kernel(k, etc="/etc"):
    fibs = int(k.get("sysctl", {}).get("net.fibs", 1) or 1)
    return Context(interfaces=k.get("ifaces", {}), etc=etc, fibs=fibs)
