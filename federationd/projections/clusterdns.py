"""Cluster DNS for multi-mesh: forwarding ``.global`` names to istiocoredns.

With multi-mesh, services of other clusters are addressed as ``NAME.NAMESPACE.global``;
istiocoredns answers those names, but only if the cluster's own DNS forwards ``global``
to it. The source operator (``pkg/resources/istiocoredns/coredns.go`` and ``kubedns.go``
on its release-1.2 branch) does this whenever ``istioCoreDNS`` is enabled, on the
cluster that runs istiocoredns (the master), in the ConfigMaps that exist there:

* ``kube-system/coredns``: appends to the ``Corefile`` the server block ::

      global:53 {
        errors
        cache 30
        proxy . <istiocoredns ClusterIP>
      }

  (a block keyed ``global:53`` that is already there is replaced), and removes that
  block when istiocoredns is disabled (here: only a block of exactly that text);
* ``kube-system/kube-dns``: sets ``"global": ["<ClusterIP>"]`` in ``stubDomains`` (a
  JSON object), and deletes that entry when disabled.

One deliberate difference in the block: CoreDNS 1.5 removed the ``proxy`` plugin (the
CoreDNS kubeadm installs from Kubernetes 1.16 on has none), and a Corefile naming a
plugin CoreDNS lacks is refused as a whole (cluster DNS stops on the next restart). So
the block forwards with the plugin the cluster's own Corefile forwards with
(``forward_plugin``): the operator's ``proxy . <ClusterIP>`` where the Corefile uses
``proxy``, ``forward . <ClusterIP>`` (the same forwarding by its successor, what Istio's
own guide writes from 1.3 on) where it uses only ``forward``.

The operator re-serialises the whole Corefile through Caddy's parser, which rewrites
the user's formatting and comments. Here the edit is textual: the user's Corefile is
kept byte for byte outside the ``global:53`` block, the block is the operator's text
(Caddy's serialisation with tabs turned into two spaces), and removing it gives back
what was there before it was added. ``stubDomains`` is rewritten (as the operator
does, with sorted keys) only when its ``global`` entry has to change.

Pure (the projections' contract): text in, text out, no I/O. The same functions are
what the actuator applies to the ConfigMap it has just read, so a user's edit that the
log has not caught up with yet is never overwritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import msgspec

#: The server block's key in the Corefile (the operator's ``caddyfile.EncodedServerBlock``).
GLOBAL_KEY = "global:53"
#: The stub domain kube-dns forwards.
GLOBAL_STUB = "global"
COREDNS = "coredns"
KUBE_DNS = "kube-dns"
DNS_NAMESPACE = "kube-system"
#: data key edited per ConfigMap
DATA_KEYS: Mapping[str, str] = {COREDNS: "Corefile", KUBE_DNS: "stubDomains"}


class DnsEditError(ValueError):
    """The ConfigMap's text cannot be edited safely (unbalanced braces, not JSON)."""


class DnsEdit(msgspec.Struct, frozen=True, kw_only=True):
    """One desired edit of a cluster DNS ConfigMap: make ``global`` forward to
    ``cluster_ip`` ("" = remove federationd's ``global`` entry). ``text`` is the data
    value that results from the observed one (what ``analyze`` and ``explain`` show)."""

    namespace: str
    name: str
    data_key: str
    cluster_ip: str
    text: str
    reasons: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        return f"v1/ConfigMap/{self.namespace}/{self.name}"


#: CoreDNS's plugins that forward a zone: ``proxy`` (the operator's; removed in CoreDNS
#: 1.5, so absent from the CoreDNS that kubeadm installs from Kubernetes 1.16 on) and
#: ``forward`` (its successor, what Istio's own multicluster guide uses from 1.3 on).
PROXY = "proxy"
FORWARD = "forward"


def forward_plugin(corefile: str) -> str:
    """The plugin the ``global`` block forwards with: the one the cluster's own Corefile
    forwards with outside that block — a plugin its CoreDNS evidently has. kubeadm's
    Corefile uses ``proxy`` up to Kubernetes 1.13 and ``forward`` from 1.14 (its CoreDNS
    drops ``proxy`` from 1.16 on); the operator's ``proxy`` when neither is used."""
    try:
        spans = [(s, e) for s, e, keys in _server_blocks(corefile) if keys and keys[0] == GLOBAL_KEY]
    except DnsEditError:
        spans = []
    text = corefile
    for s, e in reversed(spans):
        text = text[:s] + text[e:]
    used = {m.group(1) for m in re.finditer(rf"(?m)^\s*({PROXY}|{FORWARD})\s", text)}
    return FORWARD if used == {FORWARD} else PROXY


def global_block(cluster_ip: str, plugin: str = PROXY) -> str:
    """The operator's ``global:53`` block, as ``caddyfile.FromJSON`` prints it (tabs → two spaces)."""
    return f"{GLOBAL_KEY} {{\n  errors\n  cache 30\n  {plugin} . {cluster_ip}\n}}"


def _server_blocks(corefile: str) -> list[tuple[int, int, list[str]]]:
    """``(start, end, keys)`` of every top-level server block: ``start`` is where its keys
    begin, ``end`` just after its closing brace. Comments (``#`` to end of line) and
    quoted strings are skipped, so a brace in either does not count."""
    out: list[tuple[int, int, list[str]]] = []
    depth = 0
    start = -1
    head_start = -1
    keys_text = ""
    i, n = 0, len(corefile)
    while i < n:
        c = corefile[i]
        if c == "#":
            j = corefile.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == '"':
            j = i + 1
            while j < n and corefile[j] != '"':
                j += 2 if corefile[j] == "\\" else 1
            i = j + 1
            continue
        if depth == 0 and not c.isspace() and c != "{" and head_start < 0:
            head_start = i
        if c == "{":
            if depth == 0:
                start = head_start if head_start >= 0 else i
                keys_text = corefile[start:i]
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                raise DnsEditError("the Corefile has an unbalanced '}'")
            if depth == 0:
                keys = [k for k in keys_text.replace(",", " ").split() if k]
                out.append((start, i + 1, keys))
                head_start = -1
        i += 1
    if depth != 0:
        raise DnsEditError("the Corefile has an unclosed '{'")
    return out


def corefile_with_global(corefile: str, cluster_ip: str, plugin: str | None = None) -> str:
    """``corefile`` with the ``global:53`` block forwarding to ``cluster_ip``, or without
    it when ``cluster_ip`` is "". The block forwards with ``plugin``, by default the
    Corefile's own (``forward_plugin``). Only a block of exactly the operator's text is
    removed: one the user wrote otherwise is theirs. Idempotent; everything outside the
    block is kept."""
    blocks = [b for b in _server_blocks(corefile) if b[2] and b[2][0] == GLOBAL_KEY]
    plugin = plugin or forward_plugin(corefile)
    if not blocks:
        if not cluster_ip:
            return corefile
        if not corefile.strip():
            return global_block(cluster_ip, plugin) + "\n"
        if corefile.endswith("\n"):
            return corefile + "\n" + global_block(cluster_ip, plugin) + "\n"
        return corefile + "\n\n" + global_block(cluster_ip, plugin)
    start, end, _ = blocks[0]
    if cluster_ip:
        out = corefile[:start] + global_block(cluster_ip, plugin) + corefile[end:]
        # a second block of the same key (the operator replaces the first it finds)
        # would make CoreDNS refuse the Corefile: drop the others
        for s, e, _ in reversed(blocks[1:]):
            shift = len(global_block(cluster_ip, plugin)) - (end - start)
            out = _cut(out, s + shift, e + shift)
        return out
    out = corefile
    for s, e, _ in reversed(blocks):
        if _OURS.fullmatch(corefile[s:e]):  # a block the user wrote differently is theirs
            out = _cut(out, s, e)
    return out


_OURS = re.compile(
    re.escape(global_block("IP", "PLUGIN")).replace("IP", r"[0-9A-Fa-f.:]+").replace("PLUGIN", f"(?:{PROXY}|{FORWARD})")
)


def _cut(text: str, start: int, end: int) -> str:
    """``text`` without ``[start, end)`` and the blank lines that separated it from what
    came before (what ``corefile_with_global`` added before the block); a block at the
    very start takes the whitespace after it instead."""
    before = text[:start].rstrip()
    if not before:
        return text[end:].lstrip()
    return before + text[end:]


def stub_domains_with_global(stub_domains: str, cluster_ip: str) -> str:
    """kube-dns ``stubDomains`` with ``"global": [cluster_ip]`` (or without ``global``
    when ``cluster_ip`` is ""). Unchanged text when nothing has to change; otherwise the
    object is written as Go's ``json.Marshal`` writes it (sorted keys, no spaces)."""
    try:
        doc: Any = json.loads(stub_domains) if stub_domains.strip() else {}
    except ValueError as e:
        raise DnsEditError(f"stubDomains is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise DnsEditError("stubDomains is not a JSON object")
    if cluster_ip:
        if doc.get(GLOBAL_STUB) == [cluster_ip]:
            return stub_domains
        doc[GLOBAL_STUB] = [cluster_ip]
    else:
        # only the operator's shape, one name server: a longer list is the user's
        servers = doc.get(GLOBAL_STUB)
        if not (isinstance(servers, list) and len(servers) == 1):
            return stub_domains
        del doc[GLOBAL_STUB]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def edited(name: str, text: str, cluster_ip: str) -> str:
    """The edited data value of ConfigMap ``name`` (``coredns`` or ``kube-dns``)."""
    if name == COREDNS:
        return corefile_with_global(text, cluster_ip)
    return stub_domains_with_global(text, cluster_ip)


def desired_edits(
    observed: Mapping[str, tuple[str, bool, int]],
    *,
    cluster_ip: str,
    wanted: bool,
    reasons: tuple[int, ...] = (),
) -> tuple[DnsEdit, ...]:
    """The edits to make, from the observed ConfigMaps (name → (text, key present, seq of
    the fact)): with ``wanted`` and a known ``cluster_ip``, each existing ConfigMap whose
    ``global`` does not forward there gets it; without ``wanted``, each that has a
    ``global`` entry loses it. A ConfigMap that is absent is never created (the operator
    touches only those that exist), one already right needs no edit, and one whose text
    cannot be parsed is left alone (``analyze`` reports it)."""
    out: list[DnsEdit] = []
    ip = cluster_ip if wanted else ""
    if wanted and not cluster_ip:
        return ()
    for name in sorted(observed):
        if name not in DATA_KEYS:
            continue
        text, _present, seq = observed[name]
        try:
            new = edited(name, text, ip)
        except DnsEditError:
            continue
        if new == text:
            continue
        out.append(DnsEdit(
            namespace=DNS_NAMESPACE, name=name, data_key=DATA_KEYS[name], cluster_ip=ip, text=new,
            reasons=tuple(sorted({*reasons, seq} - {0})),
        ))
    return tuple(out)
