"""The boot loader's configuration as the guest's files hold it: GRUB 2 grub.cfg (menu entries,
submenus, ``set default``), grubenv (saved_entry, kernelopts), Boot Loader Specification
entries, and /etc/default/grub (+ grub.d/*.cfg): what the next update-grub writes.

Parsing follows GRUB's script lexer closely enough for the files grub-mkconfig and distro
tools write: words, '...' and "..." quoting, backslash escapes, ``;`` and newlines as
separators, ``{`` ``}`` blocks after menuentry/submenu. Bounds: ``MAX_CFG`` bytes per file,
``MAX_ENTRIES`` menu entries, submenus nested at most 8 deep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from diskkit.guest.vfs import GuestFS, Source, join, listdir, read_text

MAX_CFG = 4 << 20
MAX_ENTRIES = 1000
_MAX_DEPTH = 8


@dataclass(frozen=True)
class BootEntry:
    """One bootable entry (a grub.cfg menuentry or a BLS entry)."""

    title: str
    #: "0", "1>2" for GRUB (submenu path by index); the file stem for BLS.
    index: str
    id: str | None
    kernel: str | None
    initrd: tuple[str, ...]
    #: The kernel command line with the variables GRUB would expand.
    cmdline: str | None
    #: Submenu titles leading to it (outermost first).
    submenu: tuple[str, ...] = ()
    #: The menuentry line (GRUB) or the entry file's linux line (BLS).
    source: Source | None = None
    #: The line the command line comes from (GRUB's ``linux`` line, BLS ``options``).
    cmdline_source: Source | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"title": self.title, "index": self.index, "id": self.id, "kernel": self.kernel,
                "initrd": list(self.initrd), "cmdline": self.cmdline,
                "submenu": list(self.submenu),
                "source": self.source.to_dict() if self.source else None,
                "cmdline_source": self.cmdline_source.to_dict() if self.cmdline_source
                else None}


@dataclass(frozen=True)
class GrubConfig:
    """A parsed grub.cfg."""

    path: str
    entries: tuple[BootEntry, ...]
    #: The raw ``set default=`` value that applies (None: GRUB's own default, entry 0).
    default: str | None
    default_source: Source | None
    #: The entry GRUB boots by default, when it can be told.
    default_entry: BootEntry | None
    #: grub.cfg runs ``blscfg``: the menu is made from BLS entries.
    uses_bls: bool
    #: ``search --fs-uuid/--label/--file`` targets in the file (kind, value, source).
    searches: tuple[tuple[str, str, Source], ...] = ()
    variables: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"path": self.path, "default": self.default,
                "default_source": self.default_source.to_dict() if self.default_source else None,
                "default_entry": self.default_entry.index if self.default_entry else None,
                "uses_bls": self.uses_bls,
                "searches": [{"kind": k, "value": v, "source": s.to_dict()}
                             for k, v, s in self.searches],
                "entries": [e.to_dict() for e in self.entries]}


@dataclass(frozen=True)
class DefaultGrub:
    """/etc/default/grub and /etc/default/grub.d/*.cfg, as update-grub would source them."""

    values: dict[str, str] = field(hash=False, compare=False)
    sources: dict[str, Source] = field(hash=False, compare=False)

    @property
    def cmdline(self) -> str:
        """GRUB_CMDLINE_LINUX + GRUB_CMDLINE_LINUX_DEFAULT: the normal entry's options."""
        parts = [self.values.get("GRUB_CMDLINE_LINUX", ""),
                 self.values.get("GRUB_CMDLINE_LINUX_DEFAULT", "")]
        return " ".join(" ".join(parts).split())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"values": dict(self.values), "cmdline": self.cmdline,
                "sources": {k: s.to_dict() for k, s in self.sources.items()}}


# ---------------------------------------------------------------- lexer

@dataclass
class _Tok:
    text: str
    line: int
    kind: str  # "word", "sep", "{", "}"


def _lex(text: str) -> list[_Tok]:
    """GRUB script tokens (quotes removed, ``$var`` kept for later expansion)."""
    toks: list[_Tok] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            toks.append(_Tok("\n", line, "sep"))
            line += 1
            i += 1
            continue
        if c in " \t\r":
            i += 1
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c == ";":
            toks.append(_Tok(";", line, "sep"))
            i += 1
            continue
        if c in "{}" and (i + 1 >= n or text[i + 1] in " \t\r\n;"):
            toks.append(_Tok(c, line, c))
            i += 1
            continue
        start_line = line
        buf = []
        while i < n and text[i] not in " \t\r\n;":
            c = text[i]
            if c == "\\" and i + 1 < n:
                if text[i + 1] == "\n":
                    line += 1
                else:
                    buf.append(text[i + 1])
                i += 2
            elif c == "'":
                j = text.find("'", i + 1)
                j = n if j < 0 else j
                seg = text[i + 1:j]
                line += seg.count("\n")
                buf.append(seg.replace("$", "\0"))  # no expansion inside single quotes
                i = j + 1
            elif c == '"':
                j = i + 1
                dq: list[str] = []
                while j < n and text[j] != '"':
                    if text[j] == "\\" and j + 1 < n and text[j + 1] in '"\\$':
                        dq.append(text[j + 1])
                        j += 2
                        continue
                    dq.append(text[j])
                    j += 1
                s = "".join(dq)
                line += s.count("\n")
                buf.append(s)
                i = j + 1
            else:
                buf.append(c)
                i += 1
        toks.append(_Tok("".join(buf), start_line, "word"))
    return toks


_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_?#]+)\}|([A-Za-z_][A-Za-z0-9_]*|[0-9?#]))")


def _expand(s: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), s).replace("\0", "$")


def _literal(s: str) -> str:
    return s.replace("\0", "$")


# ---------------------------------------------------------------- grub.cfg

_Stmt = tuple[list[_Tok], int]
_KERNEL_CMDS = ("linux", "linux16", "linuxefi", "kernel")
_INITRD_CMDS = ("initrd", "initrd16", "initrdefi")
_SEARCH_KINDS = ("--fs-uuid", "-u", "--label", "-l", "--file", "-f")


def _statements(toks: list[_Tok], i: int, block: bool) -> list[_Stmt]:
    """The statements from token ``i`` up to the closing '}' (``block``) or the end: each is
    its words and, when it owns a ``{ }`` block, the index of the block's first token."""
    out: list[_Stmt] = []
    cur: list[_Tok] = []
    while i < len(toks):
        t = toks[i]
        if t.kind == "}" and block:
            break
        if t.kind == "{":
            out.append((cur, i + 1))  # the statement so far owns the block: skip over it
            depth = 1
            i += 1
            while i < len(toks) and depth:
                depth += {"{": 1, "}": -1}.get(toks[i].kind, 0)
                i += 1
            cur = []
            continue
        if t.kind == "sep":
            if cur:
                out.append((cur, -1))
            cur = []
        else:
            cur.append(t)
        i += 1
    if cur:
        out.append((cur, -1))
    return out


def _entry_id(args: list[str]) -> str | None:
    """``--id X``, ``--id=X`` or ``$menuentry_id_option X`` of a menuentry."""
    eid = None
    for k, a in enumerate(args):
        if a == "--id" or "menuentry_id_option" in a:
            eid = _literal(args[k + 1]) if k + 1 < len(args) else None
        elif a.startswith("--id="):
            eid = _literal(a[5:])
    return eid


class _GrubParser:
    """One pass over grub.cfg's statements (see :func:`parse_grub_cfg`)."""

    def __init__(self, text: str, path: str, env: dict[str, str] | None) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.toks = _lex(text[:MAX_CFG])
        self.genv: dict[str, str] = dict(env or {})
        self.from_env = set(self.genv)
        self.entries: list[BootEntry] = []
        self.defaults: list[tuple[str, Source]] = []
        self.searches: list[tuple[str, str, Source]] = []
        self.uses_bls = False

    def src(self, line: int) -> Source:
        """The source of 1-based ``line``."""
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else None
        return Source(self.path, line, text)

    def walk(self, i: int, block: bool, level: list[str], titles: tuple[str, ...], depth: int,
             in_entry: dict[str, Any] | None) -> None:
        """Statements from token ``i``; ``level`` is the submenu index path, ``in_entry`` the
        menu entry being read (None outside entries)."""
        counter = 0
        cond = 0  # if/while/for nesting: a set there may not run
        for words, body in _statements(self.toks, i, block):
            while words and words[0].text in ("then", "else", "do"):
                words = words[1:]
            if not words:
                continue
            cmd = _literal(words[0].text)
            if cmd in ("if", "while", "until", "for"):
                cond += 1
            elif cmd in ("fi", "done"):
                cond = max(0, cond - 1)
                continue
            args = [w.text for w in words[1:]]
            if body >= 0 and cmd in ("menuentry", "submenu"):
                self.menu(cmd, args, words[0].line, body, [*level, str(counter)], titles,
                          depth)
                counter += 1
            elif body >= 0:
                # if/for/function bodies with braces: walked at this level
                if depth < _MAX_DEPTH:
                    self.walk(body, True, level, titles, depth + 1, in_entry)
            else:
                self.command(cmd, args, words[0].line, in_entry, bool(depth or cond))

    def menu(self, cmd: str, args: list[str], line: int, body: int, index: list[str],
             titles: tuple[str, ...], depth: int) -> None:
        """A menuentry or a submenu whose block starts at token ``body``."""
        title = _literal(args[0]) if args else ""
        if depth >= _MAX_DEPTH:
            return
        if cmd == "submenu":
            self.walk(body, True, index, (*titles, title), depth + 1, None)
            return
        info: dict[str, Any] = {"kernel": None, "initrd": [], "cmdline": None,
                                "cmdline_source": None}
        self.walk(body, True, index[:-1], titles, depth + 1, info)
        if len(self.entries) < MAX_ENTRIES:
            self.entries.append(BootEntry(
                title, ">".join(index), _entry_id(args), info["kernel"], tuple(info["initrd"]),
                info["cmdline"], titles, self.src(line), info["cmdline_source"]))

    def command(self, cmd: str, args: list[str], line: int, in_entry: dict[str, Any] | None,
                conditional: bool) -> None:
        """One simple command."""
        if cmd == "set" and args and "=" in args[0]:
            var, _, v = args[0].partition("=")
            var = _literal(var)
            # inside if/else a set may not run: grubenv's (load_env) value stands
            if in_entry is None and not (conditional and var in self.from_env):
                self.genv[var] = _expand(v, self.genv)
                if var == "default":
                    self.defaults.append((_literal(v), self.src(line)))
        elif cmd == "blscfg":
            self.uses_bls = True
        elif cmd == "search":
            kind = next((a for a in args if a in _SEARCH_KINDS), "--file")
            vals = [a for a in args if not a.startswith("-")]
            if vals:
                self.searches.append((kind.lstrip("-"), _literal(vals[0]), self.src(line)))
        elif cmd.startswith("search.fs_uuid") and args:
            self.searches.append(("fs-uuid", _literal(args[0]), self.src(line)))
        elif in_entry is not None and cmd in _KERNEL_CMDS and args:
            in_entry["kernel"] = _literal(args[0])
            in_entry["cmdline_source"] = self.src(line)
            in_entry["cmdline"] = " ".join(
                x for x in (_expand(a, self.genv).strip() for a in args[1:]) if x)
        elif in_entry is not None and cmd in _INITRD_CMDS:
            in_entry["initrd"] = [_literal(a) for a in args]


def parse_grub_cfg(text: str, path: str, env: dict[str, str] | None = None) -> GrubConfig:
    """Menu entries, default and searches of a grub.cfg; ``env`` is grubenv's values."""
    g = _GrubParser(text, path, env)
    g.walk(0, False, [], (), 0, None)
    # the `set default` that applies: grub-mkconfig writes "${next_entry}" in the if branch
    default, dsrc = None, None
    for value, src in g.defaults:
        if "next_entry" not in value:
            default, dsrc = value, src
    target = None
    if default is not None:
        target = _find(g.entries, _expand(default, g.genv) if "$" in default else default)
    elif g.entries:
        target = next((e for e in g.entries if e.index == "0"), None)
    return GrubConfig(path, tuple(g.entries), default, dsrc, target, g.uses_bls,
                      tuple(g.searches), g.genv)


def _find(entries: list[BootEntry] | tuple[BootEntry, ...], ref: str) -> BootEntry | None:
    """The entry ``ref`` names: an index path ("1>2"), an id, or a title (parts with '>')."""
    ref = ref.strip()
    if not ref:
        return next((e for e in entries if e.index == "0"), None)
    for e in entries:
        if e.index == ref or e.id == ref or e.title == ref:
            return e
    parts = ref.split(">")
    for e in entries:
        path = [*e.submenu, e.title]
        if len(path) == len(parts):
            ok = True
            idx = e.index.split(">")
            for k, p in enumerate(parts):
                if p not in (path[k], idx[k]) and not (k == len(parts) - 1 and p == e.id):
                    ok = False
                    break
            if ok:
                return e
    return None


def parse_grubenv(data: bytes) -> dict[str, str]:
    """The variables of a GRUB environment block (1 KiB, '#' padded)."""
    text = data[:4096].decode("utf-8", "replace")
    if not text.startswith("# GRUB Environment Block"):
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        out[k] = v.replace("\\n", "\n").replace("\\\\", "\\")
    return out


# ---------------------------------------------------------------- BLS

def _vercmp_key(s: str) -> list[tuple[int, Any]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[A-Za-z]+", s)]


def parse_bls(fs: GuestFS, entries_dir: str, env: dict[str, str],
              prefix: str = "") -> tuple[BootEntry, ...]:
    """BLS entries in ``entries_dir``, newest version first (as GRUB's blscfg sorts them).
    ``prefix`` is prepended to linux/initrd paths (they are relative to the boot
    filesystem; "/boot" when /boot is not its own filesystem)."""
    found = []
    for name in listdir(fs, entries_dir, 256):
        if not name.endswith(".conf"):
            continue
        path = join(entries_dir, name)
        text = read_text(fs, path, 64 << 10)
        if text is None:
            continue
        kv: dict[str, tuple[str, int]] = {}
        initrds: list[str] = []
        for n, line in enumerate(text.splitlines()[:512], 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            k, _, v = s.partition(" ")
            v = v.strip()
            if k == "initrd":
                initrds.extend(prefix + x for x in v.split())
            else:
                kv.setdefault(k, (v, n))
        stem = name[:-5]
        opts = kv.get("options", (None, 0))[0]
        cmdline = _expand(opts, env).strip() if opts is not None else None
        linux = kv.get("linux", (None, 0))[0]
        lnum = kv.get("linux", ("", 1))[1]
        onum = kv.get("options", ("", 0))[1]
        lines = text.splitlines()
        osrc = Source(path, onum, lines[onum - 1].strip()) if onum else None
        found.append((kv.get("version", (stem, 0))[0], BootEntry(
            kv.get("title", (stem, 0))[0], stem, stem, prefix + linux if linux else None,
            tuple(initrds), cmdline, (), Source(path, lnum, lines[lnum - 1].strip()
                                                 if lines else None), osrc)))
    found.sort(key=lambda t: (_vercmp_key(t[0]), t[1].index), reverse=True)
    return tuple(e for _, e in found)


# ---------------------------------------------------------------- /etc/default/grub

_SH_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _sh_value(raw: str, env: dict[str, str]) -> str:
    """A shell assignment's value: quotes removed, $VAR expanded (not in single quotes)."""
    out, i = [], 0
    raw = raw.strip()
    while i < len(raw):
        c = raw[i]
        if c == "'":
            j = raw.find("'", i + 1)
            j = len(raw) if j < 0 else j
            out.append(raw[i + 1:j])
            i = j + 1
        elif c == '"':
            j = i + 1
            seg = []
            while j < len(raw) and raw[j] != '"':
                if raw[j] == "\\" and j + 1 < len(raw):
                    seg.append(raw[j + 1])
                    j += 2
                    continue
                seg.append(raw[j])
                j += 1
            out.append(_SH_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""),
                                   "".join(seg)))
            i = j + 1
        elif c in " \t#;":
            break
        else:
            j = i
            while j < len(raw) and raw[j] not in " \t;'\"":
                j += 1
            out.append(_SH_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), raw[i:j]))
            i = j
    return "".join(out)


def read_default_grub(fs: GuestFS) -> DefaultGrub | None:
    """/etc/default/grub then /etc/default/grub.d/*.cfg in name order (as grub-mkconfig
    sources them); None when neither exists."""
    files = ["/etc/default/grub"] + [
        join("/etc/default/grub.d", n) for n in listdir(fs, "/etc/default/grub.d", 128)
        if n.endswith(".cfg")]
    values: dict[str, str] = {}
    sources: dict[str, Source] = {}
    seen = False
    for path in files:
        text = read_text(fs, path, 256 << 10)
        if text is None:
            continue
        seen = True
        for n, line in enumerate(text.splitlines()[:4096], 1):
            s = line.strip()
            if s.startswith("export "):
                s = s[7:].strip()
            m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", s)
            if not m:
                continue
            values[m.group(1)] = _sh_value(m.group(2), values)
            sources[m.group(1)] = Source(path, n, line.strip())
    return DefaultGrub(values, sources) if seen else None
