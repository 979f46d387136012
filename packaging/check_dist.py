#!/usr/bin/env python3
"""Checks what `make dist` made, as an operator or a scanner would use it.

    target/py/bin/python packaging/check_dist.py      (make check-dist; make test)

Every check runs, each prints `ok:` or `FAIL:`, then the listing of dist/ and
a count; the exit status is 1 if any failed. The expected values come from
the sources, not from dist.sh: the version from Cargo.toml, the commit from
git (or NOMAD_HOLEPUNCH_COMMIT, or "unknown" outside a checkout), the Pingora
version and the crates' checksums from Cargo.lock, the files from the tree.

- dist/ holds exactly the archive, the package, the bill of materials and
  SHA256SUMS, and SHA256SUMS verifies (sha256sum -c, as an operator runs it).
- The archive unpacks safely (one top directory, no links, no absolute or
  `..` names, root-owned) into a temporary directory; its binary is the one
  `make build` made and runs `--version` and `--check` with conf/ from the
  archive; LICENSE, README.md, CHANGELOG.md, THIRD-PARTY-LICENSES and conf/
  are there, conf/ as in the tree.
- The Debian package's control fields are right (name, version, this
  machine's architecture, a libc6 at least as new as the binary's symbols
  need), its files are the binary in /usr/bin and the docs and examples
  under /usr/share/doc/nomad-holepunch, all root's; `dpkg-deb -x` into a
  temporary root, its binary runs `--version` and `--check`.
- The bill of materials is valid CycloneDX 1.5 (the schema, through
  cyclonedx-python-lib), lists Pingora at the locked version, every crate
  with Cargo.lock's checksum and a valid purl, and the same crates as the
  list embedded in the binary (read by rust-audit-info, and by hand from
  the .dep-v0 section: zlib-compressed JSON).
- CHANGELOG.md has an entry for this version.
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST = os.path.join(ROOT, "dist")
BUILT = os.path.join(ROOT, "target", "release", "nomad-holepunch")
DOC = "usr/share/doc/nomad-holepunch"
# rust-audit-info is where make setup-dist puts it (the Makefile's TOOLS).
TOOLS = os.environ.get("TOOLS") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nomad-holepunch-tools"
)
os.environ["PATH"] = os.path.join(TOOLS, "bin") + os.pathsep + os.environ.get("PATH", "")

results = []


def check(name):
    """Runs the decorated function as one named check; an exception or an
    AssertionError is a failure with its message."""

    def run(fn):
        try:
            detail = fn()
            results.append((True, name))
            print(f"ok: {name}" + (f" ({detail})" if detail else ""), flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            results.append((False, name))
            print(f"FAIL: {name}: {type(e).__name__ if not str(e) else ''}{e}", flush=True)
        return fn

    return run


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_files(top):
    """{relative path: sha256} of the regular files under top."""
    out = {}
    for d, _, names in os.walk(top):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, top)] = sha256(p)
    return out


# What the sources say.
with open(os.path.join(ROOT, "Cargo.toml"), "rb") as fh:
    VERSION = tomllib.load(fh)["package"]["version"]
with open(os.path.join(ROOT, "Cargo.lock"), "rb") as fh:
    LOCK = {(p["name"], p["version"]): p.get("checksum") for p in tomllib.load(fh)["package"]}
PINGORA = [v for (n, v) in LOCK if n == "pingora"]
assert len(PINGORA) == 1, f"Cargo.lock has pingora {PINGORA}"
PINGORA = PINGORA[0]


def expected_commit():
    env = os.environ.get("NOMAD_HOLEPUNCH_COMMIT")
    if env:
        return env
    try:
        top = run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT).strip()
        if os.path.realpath(top) == os.path.realpath(ROOT):
            return run(["git", "rev-parse", "HEAD"], cwd=ROOT).strip()
    except (AssertionError, FileNotFoundError):
        pass
    return "unknown"


COMMIT = expected_commit()
VERSION_LINE = f"nomad-holepunch {VERSION} (commit {COMMIT}, pingora {PINGORA})"
ARCH = run(["dpkg", "--print-architecture"]).strip()
BASE = f"nomad-holepunch-{VERSION}-linux-{ARCH}"
TARBALL = f"{BASE}.tar.gz"
DEB = f"nomad-holepunch_{VERSION}_{ARCH}.deb"
SBOM = f"{BASE}.cdx.json"
CONF = tree_files(os.path.join(ROOT, "conf"))
work = tempfile.mkdtemp(prefix="check-dist-")


def runs(binary, conf_dir, label):
    """The binary prints the expected --version and passes --check with the
    shipped Pingora settings, with nothing but a token and a socket path."""
    out = run([binary, "--version"])
    assert out == VERSION_LINE + "\n", f"{label} --version printed {out!r}, expected {VERSION_LINE!r}"
    env = {"NOMAD_TOKEN": "check", "HOLEPUNCH_SOCKET_PATH": os.path.join(work, "api.sock")}
    proc = subprocess.run(
        [binary, "--check", "-c", os.path.join(conf_dir, "holepunch.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "configuration OK" in proc.stdout, (
        f"{label} --check exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    )


@check("dist/ holds the archive, the Debian package, the bill of materials and SHA256SUMS, nothing else")
def listing():
    found = sorted(os.listdir(DIST))
    expected = sorted([TARBALL, DEB, SBOM, "SHA256SUMS"])
    assert found == expected, f"found {found}, expected {expected}"


@check("SHA256SUMS covers every other file in dist/ once, and verifies")
def checksums():
    with open(os.path.join(DIST, "SHA256SUMS"), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    listed = {}
    for line in lines:
        m = re.fullmatch(r"([0-9a-f]{64})  (\S+)", line)
        assert m, f"not a sha256sum line: {line!r}"
        assert m.group(2) not in listed, f"{m.group(2)} listed twice"
        listed[m.group(2)] = m.group(1)
    others = sorted(n for n in os.listdir(DIST) if n != "SHA256SUMS")
    assert sorted(listed) == others, f"SHA256SUMS lists {sorted(listed)}, dist/ has {others}"
    for name, digest in listed.items():
        assert sha256(os.path.join(DIST, name)) == digest, f"{name}: checksum differs"
    out = run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=DIST)
    return f"sha256sum -c: {out.count(': OK')} OK"


@check(f"{TARBALL} unpacks safely into one top directory {BASE}/, root-owned, with the expected files")
def tarball():
    top = os.path.join(work, "tar")
    os.mkdir(top)
    with tarfile.open(os.path.join(DIST, TARBALL), "r:gz") as tf:
        members = tf.getmembers()
        for m in members:
            assert m.name == BASE or m.name.startswith(BASE + "/"), f"{m.name} outside {BASE}/"
            assert not os.path.isabs(m.name) and ".." not in m.name.split("/"), f"unsafe name {m.name}"
            assert m.isfile() or m.isdir(), f"{m.name} is neither a file nor a directory"
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", ""), f"{m.name} owned by {m.uid}:{m.gid}"
        modes = {m.name[len(BASE) + 1 :]: m.mode for m in members if m.isfile()}
        tf.extractall(top, filter="data")
    files = tree_files(os.path.join(top, BASE))
    expected = {"nomad-holepunch", "LICENSE", "README.md", "CHANGELOG.md", "THIRD-PARTY-LICENSES"}
    expected |= {f"conf/{p}" for p in CONF}
    assert set(files) == expected, f"extra {sorted(set(files) - expected)}, missing {sorted(expected - set(files))}"
    assert modes["nomad-holepunch"] == 0o755, f"the binary's mode is {oct(modes['nomad-holepunch'])}"
    for name in ("LICENSE", "README.md", "CHANGELOG.md"):
        assert files[name] == sha256(os.path.join(ROOT, name)), f"{name} differs from the tree's"
    for p, digest in CONF.items():
        assert files[f"conf/{p}"] == digest, f"conf/{p} differs from the tree's"
    assert files["nomad-holepunch"] == sha256(BUILT), "the binary is not the one make build made"
    return f"{len(files)} files"


@check("the archive's binary runs --version and --check with the archive's conf/")
def tarball_runs():
    d = os.path.join(work, "tar", BASE)
    runs(os.path.join(d, "nomad-holepunch"), os.path.join(d, "conf"), "archive")
    return VERSION_LINE


@check(f"{DEB}: control fields (name, version, architecture {ARCH}, maintainer, depends)")
def deb_info():
    deb = os.path.join(DIST, DEB)
    fields = {}
    for line in run(["dpkg-deb", "--field", deb]).splitlines():
        if line and not line.startswith(" ") and ":" in line:
            k, v = line.split(":", 1)
            fields[k] = v.strip()
    for k, v in {"Package": "nomad-holepunch", "Version": VERSION, "Architecture": ARCH}.items():
        assert fields.get(k) == v, f"{k}: {fields.get(k)!r}, expected {v!r}"
    assert re.fullmatch(r".+ <[^@<>\s]+@[^@<>\s]+>", fields.get("Maintainer", "")), f"Maintainer {fields.get('Maintainer')!r}"
    assert fields.get("Description", "").strip(), "no Description"
    # The newest glibc symbol version the binary uses, read from its dynamic
    # symbols, must be covered by Depends: libc6 (>= X).
    syms = run(["objdump", "-T", BUILT])
    needed = max((tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", syms)))
    m = re.search(r"libc6 \(>= (\d+(?:\.\d+)+)\)", fields.get("Depends", ""))
    assert m, f"Depends has no libc6 (>= ...): {fields.get('Depends')!r}"
    assert tuple(map(int, m.group(1).split("."))) >= needed, f"libc6 >= {m.group(1)}, the binary needs {needed}"
    assert "libgcc-s1" in fields["Depends"], f"Depends lacks libgcc-s1 (libgcc_s.so.1): {fields['Depends']!r}"
    return f"Depends: {fields['Depends']}"


@check(f"{DEB}: the binary in /usr/bin, docs and examples under /{DOC}, nothing else, all root's")
def deb_contents():
    listing = run(["dpkg-deb", "--contents", os.path.join(DIST, DEB)]).splitlines()
    entries = {}
    for line in listing:
        perms, owner, _size, _date, _time, path = line.split(None, 5)
        assert owner == "root/root", f"{path} owned by {owner}"
        entries[path.removeprefix("./").rstrip("/")] = perms
    files = {p for p, perms in entries.items() if perms.startswith("-")}
    expected = {"usr/bin/nomad-holepunch"} | {
        f"{DOC}/{n}"
        for n in ("copyright", "README.Debian", "README.md", "changelog.gz", "CHANGELOG.md.gz", "THIRD-PARTY-LICENSES.gz")
    }
    expected.add("usr/share/lintian/overrides/nomad-holepunch")
    expected |= {f"{DOC}/examples/{p}" for p in CONF}
    assert files == expected, f"extra {sorted(files - expected)}, missing {sorted(expected - files)}"
    assert entries["usr/bin/nomad-holepunch"] == "-rwxr-xr-x", entries["usr/bin/nomad-holepunch"]
    others = [p for p in entries if p not in ("", "usr") and not p.startswith("usr/")]
    assert not others, f"outside /usr: {others}"
    return f"{len(files)} files"


@check("the package unpacks into a temporary root (dpkg-deb -x) and its binary runs --version and --check")
def deb_runs():
    root = os.path.join(work, "deb")
    run(["dpkg-deb", "-x", os.path.join(DIST, DEB), root])
    binary = os.path.join(root, "usr/bin/nomad-holepunch")
    assert sha256(binary) == sha256(BUILT), "the packaged binary is not the one make build made"
    examples = os.path.join(root, DOC, "examples")
    assert tree_files(examples) == CONF, "the examples differ from conf/"
    runs(binary, examples, "package")
    with gzip.open(os.path.join(root, DOC, "CHANGELOG.md.gz"), "rb") as fh:
        assert fh.read() == open(os.path.join(ROOT, "CHANGELOG.md"), "rb").read(), "CHANGELOG.md.gz is not CHANGELOG.md"
    with gzip.open(os.path.join(root, DOC, "changelog.gz"), "rt", encoding="utf-8") as fh:
        first = fh.readline()
    assert first.startswith(f"nomad-holepunch ({VERSION}) "), f"changelog.gz starts {first!r}"
    with open(os.path.join(root, DOC, "copyright"), encoding="utf-8") as fh:
        assert "License: MPL-2.0" in fh.read(), "copyright does not name MPL-2.0"


def sbom():
    with open(os.path.join(DIST, SBOM), encoding="utf-8") as fh:
        return json.load(fh)


@check(f"{SBOM} is valid CycloneDX 1.5 (its JSON schema)")
def sbom_schema():
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    with open(os.path.join(DIST, SBOM), encoding="utf-8") as fh:
        error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(fh.read())
    assert error is None, f"schema: {error}"


@check(f"the bill of materials lists Pingora {PINGORA} (Cargo.lock's), and every crate with Cargo.lock's checksum and a valid purl")
def sbom_contents():
    from packageurl import PackageURL

    bom = sbom()
    meta = bom["metadata"]["component"]
    assert (meta["name"], meta["version"]) == ("nomad-holepunch", VERSION), f"metadata.component is {meta['name']} {meta['version']}"
    props = {p["name"]: p["value"] for p in meta.get("properties", [])}
    assert props.get("nomad-holepunch:commit") == COMMIT, f"commit {props.get('nomad-holepunch:commit')}, expected {COMMIT}"
    comps = bom["components"]
    pingora = [c for c in comps if c["name"] == "pingora"]
    assert [c["version"] for c in pingora] == [PINGORA], f"pingora components: {pingora}"
    assert pingora[0]["purl"] == f"pkg:cargo/pingora@{PINGORA}" and pingora[0]["scope"] == "required", pingora[0]
    for c in comps:
        key = (c["name"], c["version"])
        assert key in LOCK, f"{key} is not in Cargo.lock"
        assert c["hashes"] == [{"alg": "SHA-256", "content": LOCK[key]}], f"{key}: hash differs from Cargo.lock"
        p = PackageURL.from_string(c["purl"])
        assert (p.type, p.name, p.version) == ("cargo", c["name"], c["version"]), c["purl"]
    return f"{len(comps)} crates"


def embedded(binary):
    """The dependency list in the binary, read two ways that must agree:
    rust-audit-info, and the .dep-v0 section decompressed by hand."""
    by_tool = json.loads(run(["rust-audit-info", binary]))
    section = os.path.join(work, "dep-v0")
    run(["objcopy", "--dump-section", f".dep-v0={section}", binary, os.path.join(work, "objcopy-out")])
    with open(section, "rb") as fh:
        by_hand = json.loads(zlib.decompress(fh.read()))
    assert by_tool == by_hand, "rust-audit-info and the .dep-v0 section disagree"
    return by_hand


@check("the binary embeds its dependency list (cargo auditable), and it names the same crates as the bill of materials")
def audit():
    data = embedded(os.path.join(work, "tar", BASE, "nomad-holepunch"))
    pkgs = data["packages"]
    roots = [p for p in pkgs if p.get("root")]
    assert [(p["name"], p["version"]) for p in roots] == [("nomad-holepunch", VERSION)], f"root {roots}"
    listed = {(p["name"], p["version"]) for p in pkgs if not p.get("root")}
    comps = {(c["name"], c["version"]): c["scope"] for c in sbom()["components"]}
    assert listed == set(comps), (
        f"only in the binary: {sorted(listed - set(comps))}; only in the bill of materials: {sorted(set(comps) - listed)}"
    )
    # A crate the binary's list calls build-only is build-only in the bill
    # of materials too. (cargo-auditable 0.7.7 calls procedural macros and
    # their dependencies runtime: its proc_macro_packages looks for a crate
    # with one target, and cargo metadata lists their tests as targets too.)
    for p in pkgs:
        if p.get("kind") == "build":
            assert comps[(p["name"], p["version"])] == "excluded", f"{p['name']} is build-only in the binary, not in the bill of materials"
    pingora = [p["version"] for p in pkgs if p["name"] == "pingora"]
    assert pingora == [PINGORA], f"the binary lists pingora {pingora}"
    return f"{len(listed)} crates"


@check("THIRD-PARTY-LICENSES has a section for every crate linked into the binary")
def notices():
    with open(os.path.join(work, "tar", BASE, "THIRD-PARTY-LICENSES"), encoding="utf-8") as fh:
        text = fh.read()
    missing = [
        f"{c['name']} {c['version']}"
        for c in sbom()["components"]
        if c["scope"] == "required" and f"\n{c['name']} {c['version']}: " not in text
    ]
    assert not missing, f"no section for {missing}"


@check(f"CHANGELOG.md (Keep a Changelog) has an entry for {VERSION}")
def changelog():
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as fh:
        text = fh.read()
    assert "keepachangelog.com/en/1.1.0" in text, "not in the Keep a Changelog format"
    assert re.search(rf"^## \[{re.escape(VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.M), f"no `## [{VERSION}] - YYYY-MM-DD`"


shutil.rmtree(work, ignore_errors=True)
print("\ndist/:")
for name in sorted(os.listdir(DIST)):
    print(f"  {os.path.getsize(os.path.join(DIST, name)):>10}  {name}")
failed = sum(1 for good, _ in results if not good)
print(f"\ncheck-dist: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
