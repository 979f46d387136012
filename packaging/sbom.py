#!/usr/bin/env python3
"""The software bill of materials of the release binary, from Cargo.lock.

    python3 packaging/sbom.py --target x86_64-unknown-linux-gnu \
        --commit <git commit> --out dist/<name>.cdx.json \
        [--notices dist/THIRD-PARTY-LICENSES]

Writes CycloneDX 1.5 JSON. The crate graph is `cargo metadata --locked
--offline --filter-platform <target>` (Cargo.lock, as `--locked` builds
resolve it, for the one platform, with the default features); a crate's
SHA-256 is Cargo.lock's checksum, its purl `pkg:cargo/<name>@<version>`
(crates.io, the only source deny.toml allows), its license Cargo.toml's
SPDX expression.

Which crates, and their scope, follow the rule cargo-auditable uses for the
list it embeds in the binary (cargo-auditable 0.7.7,
src/auditable_from_metadata.rs, encode_audit_data), so that the two can be
compared: walk from nomad-holepunch over normal and build dependencies, never
dev-dependencies; a crate reached only through a build dependency or a
procedural macro is "build". Runtime crates are `scope: required` (linked
into the binary), build-only ones `scope: excluded` (they ran while
building it).

With --notices, also writes the license files (LICENSE*, LICENCE*, COPYING*,
NOTICE*, AUTHORS*) of every runtime crate, from Cargo's source directory:
the notices MIT, BSD and Apache-2.0 ask a binary distribution to carry.

The output depends only on its inputs (SOURCE_DATE_EPOCH for the timestamp,
a name-based UUID for the serial number), so two runs on one tree are equal.
Standard library only.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
RUNTIME, BUILD = 2, 1  # stronger is larger, as in cargo-auditable
NOTICE_FILE = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE|AUTHORS)([-._].*)?$", re.I)


def fail(msg):
    print(f"sbom.py: {msg}", file=sys.stderr)
    sys.exit(1)


def cargo_metadata(target):
    cargo = os.environ.get("CARGO", "cargo")
    out = subprocess.run(
        [cargo, "metadata", "--locked", "--offline", "--format-version", "1", "--filter-platform", target],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    return json.loads(out)


def classify(meta):
    """{package id: RUNTIME or BUILD} for everything the root reaches, as
    cargo-auditable's encode_audit_data decides it."""
    resolve = meta["resolve"]
    root = resolve["root"]
    if root is None:
        fail("cargo metadata has no root package")
    nodes = {n["id"]: n for n in resolve["nodes"]}
    proc_macros = {
        p["id"] for p in meta["packages"] if any("proc-macro" in t["kind"] for t in p["targets"])
    }
    kind = {root: RUNTIME}
    queue = [root]
    while queue:
        parent = queue.pop(0)
        for dep in nodes[parent]["deps"]:
            kinds = [k["kind"] for k in dep["dep_kinds"]]
            if None in kinds or "normal" in kinds:
                k = RUNTIME
            elif "build" in kinds:
                k = BUILD
            else:
                continue  # dev-dependency only
            k = min(k, kind[parent])
            if dep["pkg"] in proc_macros:
                k = min(k, BUILD)
            if kind.get(dep["pkg"], 0) < k:
                kind[dep["pkg"]] = k
                queue.append(dep["pkg"])
    return kind


def lock_checksums():
    with open(os.path.join(ROOT, "Cargo.lock"), "rb") as fh:
        lock = tomllib.load(fh)
    return {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}


def spdx(expr):
    # Old Cargo.toml files write "MIT/Apache-2.0" for "MIT OR Apache-2.0".
    return " OR ".join(part.strip() for part in expr.split("/")) if expr else expr


def purl(p):
    return f"pkg:cargo/{p['name']}@{p['version']}"


def notices(packages, kind):
    """The license files of every runtime crate, one section each."""
    out = [
        "Third-party notices for nomad-holepunch\n",
        "The nomad-holepunch binary links the Rust crates below (its runtime\n"
        "dependencies in Cargo.lock). Each section names a crate, its version and\n"
        "license as its Cargo.toml declares it, and the license and notice files\n"
        "it ships. nomad-holepunch itself is under MPL-2.0 (LICENSE).\n",
    ]
    for p in packages:
        if kind.get(p["id"]) != RUNTIME or p["source"] is None:
            continue
        out.append("\n" + "=" * 78 + "\n")
        out.append(f"{p['name']} {p['version']}: {spdx(p.get('license')) or p.get('license_file')}\n")
        if p.get("repository"):
            out.append(f"{p['repository']}\n")
        crate_dir = os.path.dirname(p["manifest_path"])
        files = sorted(n for n in os.listdir(crate_dir) if NOTICE_FILE.match(n))
        if not files:
            out.append("(the crate ships no license file; its license is the one named above)\n")
        for name in files:
            path = os.path.join(crate_dir, name)
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            out.append(f"\n--- {name} ---\n\n{text.rstrip()}\n")
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="the Rust target triple the binary is built for")
    ap.add_argument("--commit", default="unknown", help="the git commit of the build")
    ap.add_argument("--out", required=True)
    ap.add_argument("--notices", help="also write the runtime crates' license files here")
    args = ap.parse_args()

    meta = cargo_metadata(args.target)
    kind = classify(meta)
    checksums = lock_checksums()
    packages = sorted(
        (p for p in meta["packages"] if p["id"] in kind), key=lambda p: (p["name"], p["version"])
    )
    root_id = meta["resolve"]["root"]
    root = next(p for p in packages if p["id"] == root_id)
    ref = {p["id"]: (f"{p['name']}@{p['version']}" if p["id"] == root_id else purl(p)) for p in packages}

    components = []
    for p in packages:
        if p["id"] == root_id:
            continue
        if p["source"] != CRATES_IO:
            fail(f"{p['name']} {p['version']} is not from crates.io ({p['source']}): deny.toml should have refused it")
        checksum = checksums.get((p["name"], p["version"]))
        if not checksum:
            fail(f"Cargo.lock has no checksum for {p['name']} {p['version']}")
        c = {
            "type": "library",
            "bom-ref": ref[p["id"]],
            "name": p["name"],
            "version": p["version"],
            "scope": "required" if kind[p["id"]] == RUNTIME else "excluded",
            "hashes": [{"alg": "SHA-256", "content": checksum}],
            "purl": purl(p),
        }
        if p.get("description"):
            c["description"] = " ".join(p["description"].split())
        if p.get("license"):
            c["licenses"] = [{"expression": spdx(p["license"])}]
        refs = []
        if p.get("repository"):
            refs.append({"type": "vcs", "url": p["repository"]})
        refs.append({"type": "distribution", "url": f"https://crates.io/crates/{p['name']}/{p['version']}"})
        c["externalReferences"] = refs
        components.append(c)

    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    dependencies = [
        {
            "ref": ref[p["id"]],
            "dependsOn": sorted({ref[d["pkg"]] for d in nodes[p["id"]]["deps"] if d["pkg"] in kind}),
        }
        for p in packages
    ]

    with open(os.path.join(ROOT, "Cargo.lock"), "rb") as fh:
        lock_sha = hashlib.sha256(fh.read()).hexdigest()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or datetime.datetime.now().timestamp())
    timestamp = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    serial = uuid.uuid5(
        uuid.NAMESPACE_URL,
        f"nomad-holepunch/{root['version']}/{args.commit}/{args.target}/Cargo.lock:{lock_sha}",
    )
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": {
                "components": [
                    {
                        "type": "application",
                        "name": "packaging/sbom.py",
                        "description": "nomad-holepunch's own generator, from cargo metadata and Cargo.lock",
                    }
                ]
            },
            "component": {
                "type": "application",
                "bom-ref": ref[root_id],
                "name": root["name"],
                "version": root["version"],
                "description": " ".join((root.get("description") or "").split()),
                "licenses": [{"license": {"id": root["license"]}}],
                "properties": [
                    {"name": "nomad-holepunch:commit", "value": args.commit},
                    {"name": "nomad-holepunch:target", "value": args.target},
                    {"name": "nomad-holepunch:cargo-lock-sha256", "value": lock_sha},
                ],
            },
        },
        "components": components,
        "dependencies": dependencies,
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(bom, fh, indent=1, sort_keys=False)
        fh.write("\n")
    if args.notices:
        with open(args.notices, "w", encoding="utf-8") as fh:
            fh.write(notices(packages, kind))
    runtime = sum(1 for c in components if c["scope"] == "required")
    print(f"sbom.py: {args.out}: {len(components)} crates, {runtime} linked into the binary, {len(components) - runtime} build-time only")


if __name__ == "__main__":
    main()
