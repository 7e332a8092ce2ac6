#!/usr/bin/env bash
# Build the root filesystem of a minimal PostgreSQL 15 image from this host's
# Debian binaries and write it as a tar to $1 (for docker import: there is
# no registry). Needs root (ownership in the tar), busybox-static and
# postgresql-15.
#
#   mkpgimage.sh OUT.tar
#   docker import --change 'ENV PATH=/usr/lib/postgresql/15/bin:/bin' \
#     --change 'CMD ["/bin/pg-entry"]' OUT.tar NAME
set -euo pipefail
out=${1:?usage: mkpgimage.sh OUT.tar}
here=$(cd "$(dirname "$0")" && pwd)
pgbin=/usr/lib/postgresql/15/bin
bins=(postgres initdb psql pgbench pg_isready pg_amcheck)
for b in "${bins[@]}"; do
	[ -x "$pgbin/$b" ] || { echo "mkpgimage: $pgbin/$b missing: apt-get install postgresql-15" >&2; exit 1; }
done
busybox=
for p in /bin/busybox /usr/bin/busybox; do [ -x "$p" ] && busybox=$p && break; done
[ -n "$busybox" ] || { echo "mkpgimage: no static busybox: apt-get install busybox-static" >&2; exit 1; }

root=$(mktemp -d)
chmod 0755 "$root" # the image's / (mktemp makes it 0700)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,tmp,etc,run/postgresql,var/lib/postgresql,usr/lib/postgresql/15/bin,usr/lib/postgresql/15/lib,usr/share/postgresql,usr/share/zoneinfo}
chmod 1777 "$root/tmp"
ln -s ../run "$root/var/run"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
for b in "${bins[@]}"; do cp "$pgbin/$b" "$root/usr/lib/postgresql/15/bin/"; done
# The shared libraries the binaries need, at the paths ldd names.
for lib in $(for b in "${bins[@]}"; do ldd "$pgbin/$b"; done | grep -o '/[^ ]*' | sort -u); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
# PostgreSQL's own modules (plpgsql and the encoding converters initdb loads).
# Not llvmjit.so: it needs libLLVM, and without it PostgreSQL simply runs
# queries without JIT instead of failing the costly ones.
find /usr/lib/postgresql/15/lib -maxdepth 1 -name '*.so' ! -name 'llvmjit*' -exec cp {} "$root/usr/lib/postgresql/15/lib/" \;
cp -r /usr/share/postgresql/15 "$root/usr/share/postgresql/"
cp -r /usr/share/zoneinfo/Etc /usr/share/zoneinfo/UTC "$root/usr/share/zoneinfo/" 2>/dev/null || true
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'postgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/sh' >>"$root/etc/passwd"
printf 'root:x:0:\npostgres:x:104:\n' >"$root/etc/group"
chown -R 101:104 "$root/run/postgresql" "$root/var/lib/postgresql"
install -m 0755 "$here/pg-entry.sh" "$root/bin/pg-entry"
tar -C "$root" -cf "$out" .
