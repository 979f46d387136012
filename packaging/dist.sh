#!/usr/bin/env bash
# make dist: the release artifacts for this machine's platform, from the
# release binary `make build` made (target/release/nomad-holepunch), in dist/:
#
#   nomad-holepunch-<version>-linux-<arch>.tar.gz   the binary, LICENSE,
#       README.md, CHANGELOG.md, THIRD-PARTY-LICENSES and conf/, under one
#       top directory of the same name
#   nomad-holepunch_<version>_<arch>.deb           /usr/bin/nomad-holepunch,
#       the documents, and conf/ as examples under /usr/share/doc/nomad-holepunch
#   nomad-holepunch-<version>-linux-<arch>.cdx.json  the CycloneDX bill of
#       materials (packaging/sbom.py, from Cargo.lock)
#   SHA256SUMS                                      over every file above
#
# packaging/check_dist.py (make test) checks all of it. Archives and package
# are reproducible for one binary: owners, modes, order and times are fixed
# (SOURCE_DATE_EPOCH: the commit's time), and gzip stores no name or time.
#
# Environment: DEB_MAINTAINER (the package's Maintainer field),
# SOURCE_DATE_EPOCH.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/nomad-holepunch
out=dist
stage=target/dist

die() { echo "make dist: $*" >&2; exit 1; }

[ -x "$bin" ] || die "$bin is missing: run make build"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || die "no version in Cargo.toml"
# The binary is built for the host.
target=$(rustc -vV | sed -n 's/^host: //p')
case "$target" in
  x86_64-unknown-linux-gnu) arch=amd64 ;;
  aarch64-unknown-linux-gnu) arch=arm64 ;;
  *) die "no release for $target: linux amd64 and arm64 only (docs/releases.md, Platforms)" ;;
esac
deb_arch=$(dpkg --print-architecture)
[ "$deb_arch" = "$arch" ] || die "dpkg says $deb_arch, rustc's host is $target"

# The binary says what it is; the artifacts are named and labelled from it,
# so they cannot disagree with it.
read -r name_word bin_version _ commit _ <<<"$("$bin" --version | tr -d '(),')"
[ "$name_word $bin_version" = "nomad-holepunch $version" ] ||
  die "$bin --version says $name_word $bin_version, Cargo.toml $version: run make build"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
maintainer=${DEB_MAINTAINER:-nomad-holepunch maintainers <nomad-holepunch@localhost>}

rm -rf "$out" "$stage"
mkdir -p "$out" "$stage"
base=nomad-holepunch-$version-linux-$arch

# The bill of materials, and the license files of every linked crate.
python3 packaging/sbom.py --target "$target" --commit "$commit" \
  --out "$out/$base.cdx.json" --notices "$stage/THIRD-PARTY-LICENSES"

# Fixed modes, owners and times for everything that goes into an archive.
normalise() {
  find "$1" -type d -exec chmod 0755 {} +
  find "$1" -type f -exec chmod 0644 {} +
  chmod 0755 "$1"/"$2"
  find "$1" -name '*.sh' -exec chmod 0755 {} +
  find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# The archive.
tree=$stage/tar/$base
mkdir -p "$tree"
cp "$bin" "$tree/nomad-holepunch"
cp LICENSE README.md CHANGELOG.md "$stage/THIRD-PARTY-LICENSES" "$tree/"
cp -r conf "$tree/conf"
normalise "$tree" nomad-holepunch
tar --sort=name --owner=0 --group=0 --numeric-owner --format=gnu \
  --mtime="@$SOURCE_DATE_EPOCH" -C "$stage/tar" -cf - "$base" |
  gzip -9 -n >"$out/$base.tar.gz"

# The Debian package.
deb=$stage/deb
doc=$deb/usr/share/doc/nomad-holepunch
mkdir -p "$deb/DEBIAN" "$deb/usr/bin" "$doc"
cp "$bin" "$deb/usr/bin/nomad-holepunch"
cp README.md packaging/debian/README.Debian packaging/debian/copyright "$doc/"
# A native package's changelog.gz is in Debian's format (lintian parses it);
# the project's own changelog goes beside it.
gzip -9 -n -c CHANGELOG.md >"$doc/CHANGELOG.md.gz"
{
  printf 'nomad-holepunch (%s) unstable; urgency=medium\n\n' "$version"
  printf '  * Release %s, commit %s.\n' "$version" "$commit"
  printf '    See /usr/share/doc/nomad-holepunch/CHANGELOG.md.gz for the changes.\n\n'
  printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9 -n >"$doc/changelog.gz"
mkdir -p "$deb/usr/share/lintian/overrides"
cp packaging/debian/lintian-overrides "$deb/usr/share/lintian/overrides/nomad-holepunch"
gzip -9 -n -c "$stage/THIRD-PARTY-LICENSES" >"$doc/THIRD-PARTY-LICENSES.gz"
cp -r conf "$doc/examples"
normalise "$deb/usr" bin/nomad-holepunch
# The libraries the binary needs (libc6, libgcc-s1) at the versions its
# symbols ask for, from dpkg-shlibdeps, which reads a debian/control.
shlib=$stage/shlibdeps
mkdir -p "$shlib/debian"
printf 'Source: nomad-holepunch\n\nPackage: nomad-holepunch\nArchitecture: any\n' >"$shlib/debian/control"
depends=$(cd "$shlib" && dpkg-shlibdeps -O "$OLDPWD/$deb/usr/bin/nomad-holepunch" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies for the binary"
installed=$(du -sk --apparent-size "$deb/usr" | cut -f1)
cat >"$deb/DEBIAN/control" <<EOF
Package: nomad-holepunch
Version: $version
Architecture: $deb_arch
Maintainer: $maintainer
Installed-Size: $installed
Depends: $depends
Section: net
Priority: optional
Description: Nomad Task API proxy with an endpoint allowlist
 Exposes an allowlisted part of the Nomad HTTP API on TCP from inside a
 Nomad task, using the task's Workload Identity: it forwards the endpoint
 groups the operator allows to the Task API socket with the workload token,
 and refuses everything else. A drop-in replacement for shoenig's Go
 nomad-holepunch, built on Pingora.
 .
 For the exec and raw_exec drivers: see README.Debian, and the job and
 ACL policy examples in /usr/share/doc/nomad-holepunch/examples.
EOF
chmod 0644 "$deb/DEBIAN/control"
chmod 0755 "$deb" "$deb/DEBIAN"
touch -h -d "@$SOURCE_DATE_EPOCH" "$deb/DEBIAN" "$deb/DEBIAN/control" "$deb"
dpkg-deb --root-owner-group -Zxz --build "$deb" "$out/nomad-holepunch_${version}_$deb_arch.deb" >/dev/null

(cd "$out" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort |
  xargs sha256sum -- >SHA256SUMS)

echo "make dist: $out/ for $target (commit $commit):"
(cd "$out" && ls -l)
