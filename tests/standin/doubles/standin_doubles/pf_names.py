"""Protocol, service, ICMP type and user names as pfctl resolves them.

pfctl looks names up with getprotobyname(3)/getservbyname(3) in FreeBSD's
/etc/protocols and /etc/services and prints them back with
getprotobynumber(3)/getservbyport(3).  The stand-in's /etc holds the Linux
machine's copies, whose names differ from FreeBSD's, so the entries the
roles use are kept here after FreeBSD's files (FreeBSD src
lib/libc/net/protocols and usr.sbin/services_mkdb/services).  A name outside
these tables is "unknown" here even if FreeBSD knows it: the parser reports
it as pfctl does for a name FreeBSD lacks ("unknown protocol x",
"unknown port x").
"""

# FreeBSD /etc/protocols: name -> number; printing uses the first name
PROTOCOLS = {
    "ip": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "tcp": 6, "egp": 8, "udp": 17,
    "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51,
    "ipv6-icmp": 58, "icmp6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "eigrp": 88, "ospf": 89,
    "etherip": 97, "pim": 103, "ipcomp": 108, "vrrp": 112, "carp": 112, "l2tp": 115,
    "sctp": 132, "udplite": 136, "pfsync": 240, "divert": 258,
}
PROTOCOL_NAMES = {}
for _name, _num in PROTOCOLS.items():
    PROTOCOL_NAMES.setdefault(_num, _name)
PROTOCOL_NAMES[112] = "carp"  # FreeBSD's protocols lists carp for 112 first

# FreeBSD /etc/services (tcp or udp): name -> port; aliases map to the same port
SERVICES = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "time": 37, "domain": 53,
    "bootps": 67, "bootpc": 68, "tftp": 69, "gopher": 70, "finger": 79, "http": 80, "www": 80,
    "www-http": 80, "kerberos": 88, "kerberos-sec": 88, "pop3": 110, "sunrpc": 111, "auth": 113,
    "nntp": 119, "ntp": 123, "netbios-ns": 137, "netbios-dgm": 138, "netbios-ssn": 139,
    "imap": 143, "imap4": 143, "snmp": 161, "snmptrap": 162, "bgp": 179, "ldap": 389, "https": 443,
    "microsoft-ds": 445, "kpasswd": 464, "syslog": 514, "submission": 587, "ldaps": 636,
    "rsync": 873, "imaps": 993, "pop3s": 995, "openvpn": 1194, "mysql": 3306, "svn": 3690,
    "postgresql": 5432, "http-alt": 8080, "git": 9418,
}
# getservbyport(3) answers with the entry's official name, not an alias
SERVICE_NAMES = {
    20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 37: "time", 53: "domain",
    67: "bootps", 68: "bootpc", 69: "tftp", 70: "gopher", 79: "finger", 80: "http", 88: "kerberos-sec",
    110: "pop3", 111: "sunrpc", 113: "auth", 119: "nntp", 123: "ntp", 137: "netbios-ns",
    138: "netbios-dgm", 139: "netbios-ssn", 143: "imap", 161: "snmp", 162: "snmptrap", 179: "bgp",
    389: "ldap", 443: "https", 445: "microsoft-ds", 464: "kpasswd", 514: "syslog", 587: "submission",
    636: "ldaps", 873: "rsync", 993: "imaps", 995: "pop3s", 1194: "openvpn", 3306: "mysql",
    3690: "svn", 5432: "postgresql", 8080: "http-alt", 9418: "git",
}

# ICMP types pfctl knows by name (sbin/pfctl/pfctl_parser.c icmp_type[])
ICMP_TYPES = {
    "echoreq": 8, "echorep": 0, "unreach": 3, "squench": 4, "redir": 5, "althost": 6,
    "routeradv": 9, "routersol": 10, "timex": 11, "paramprob": 12, "timereq": 13, "timerep": 14,
    "inforeq": 15, "inforep": 16, "maskreq": 17, "maskrep": 18, "trace": 30, "dataconv": 31,
    "mobredir": 32, "ipv6-where": 33, "ipv6-here": 34, "mobregreq": 35, "mobregrep": 36,
    "skip": 39, "photuris": 40,
}
ICMP_TYPE_NAMES = {v: k for k, v in ICMP_TYPES.items()}
ICMP6_TYPES = {
    "unreach": 1, "toobig": 2, "timex": 3, "paramprob": 4, "echoreq": 128, "echorep": 129,
    "groupqry": 130, "listqry": 130, "grouprep": 131, "listenrep": 131, "groupterm": 132,
    "listendone": 132, "routersol": 133, "routeradv": 134, "neighbrsol": 135, "neighbradv": 136,
    "redir": 137,
}
ICMP6_TYPE_NAMES = {}
for _name, _num in ICMP6_TYPES.items():
    ICMP6_TYPE_NAMES.setdefault(_num, _name)


def service_name(port):
    return SERVICE_NAMES.get(port, str(port))


def protocol_name(number):
    return PROTOCOL_NAMES.get(number, str(number))


def _passwd_lookup(path, name):
    """uid/gid of ``name`` in a passwd/group file (as getpwnam(3) reads it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                fields = line.rstrip("\n").split(":")
                if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
                    return int(fields[2])
    except OSError:
        pass
    return None


def user_id(name, etc="/etc"):
    return _passwd_lookup(f"{etc}/passwd", name)


def group_id(name, etc="/etc"):
    return _passwd_lookup(f"{etc}/group", name)


def hosts_lookup(name, etc="/etc"):
    """Addresses of ``name`` in /etc/hosts: the stand-in has no DNS, so a
    name found nowhere else fails as a failed lookup does on FreeBSD."""
    found = []
    try:
        with open(f"{etc}/hosts", encoding="utf-8") as fh:
            for line in fh:
                words = line.split("#", 1)[0].split()
                if len(words) > 1 and name in words[1:]:
                    found.append(words[0])
    except OSError:
        pass
    return found
