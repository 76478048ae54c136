#!/usr/bin/env bash
# setup-mysql.sh — provides Oracle MySQL (9.7.x) on Debian 12, which has no mysql-server.
#
# Downloads Debian sid's mysql-server-core + mysql-client-core and their library closure
# with a private apt configuration (nothing under /etc/apt is touched, no root needed),
# unpacks every .deb with `dpkg-deb -x` into $ROWSTREAM_MYSQL_ROOT
# (default $ROWSTREAM_CACHE/mysql-sid/root) and checks that mysqld runs through sid's own
# dynamic loader (see mysql_tool_cmd in lib.sh). About 100 MB download, 350 MB on disk.
#
# Idempotent: a ready tree (marker .rowstream-ready) is reused; FORCE=1 rebuilds.
# Prints the tree's path on stdout.
# Env: DEBIAN_MIRROR (http://deb.debian.org/debian), MYSQL_SUITE (sid),
#      MYSQL_PKGS ("mysql-server-core mysql-client-core").
source "$(dirname "$0")/lib.sh"

SUITE=${MYSQL_SUITE:-sid}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS=${MYSQL_PKGS:-mysql-server-core mysql-client-core}
ROOT=$ROWSTREAM_MYSQL_ROOT
A=$ROOT.apt           # private apt state: lists, debs
P=$ROOT.partial       # tree being built
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"; flock 9

[[ -n ${FORCE:-} ]] && rm -rf --one-file-system "$ROOT"
if [[ -f $ROOT/.rowstream-ready ]]; then
  log "MySQL tree ready (cached): $ROOT ($(sed -n 's/^mysqld=//p' "$ROOT/.rowstream-ready"))"
  echo "$ROOT"; exit 0
fi
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f $KEYRING ]] || die "$KEYRING missing (apt-get install debian-archive-keyring)"

T0=$(now)
rm -rf "$A/lists" "$A/cache"
mkdir -p "$A/lists/partial" "$A/archives/partial" "$A/cache"
: >"$A/status"      # empty dpkg status => apt resolves the complete dependency closure
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$A/sources.list"
cat >"$A/apt.conf" <<CONF
Dir::Etc::SourceList "$A/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "/dev/null";
Dir::State::Lists "$A/lists";
Dir::State::status "$A/status";
Dir::Cache "$A/cache";
Dir::Cache::archives "$A/archives";
Acquire::Check-Valid-Until "false";
Acquire::Languages "none";
APT::Install-Recommends "false";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Debug::NoLocking "true";
CONF
export APT_CONFIG=$A/apt.conf
[[ $(dpkg --print-architecture 2>/dev/null || uname -m) == @(amd64|x86_64) ]] || die "only amd64 is supported"

t=$(now)
apt-get -q update >"$A/update.log" 2>&1 || { tail -20 "$A/update.log" >&2; die "apt-get update ($SUITE lists) failed"; }
log "apt-get update ($SUITE lists): $(elapsed "$t")s"

t=$(now)
apt-get -q -y install --download-only $PKGS >"$A/download.log" 2>&1 \
  || { tail -20 "$A/download.log" >&2; die "apt-get --download-only $PKGS failed"; }
log "downloaded the closure of $PKGS: $(elapsed "$t")s ($(du -sh "$A/archives" | cut -f1))"

t=$(now); rm -rf --one-file-system "$P"; mkdir -p "$P"
# Extract exactly the closure apt chose now (archives may hold older versions).
mapfile -t DEBS < <(apt-get -q -s install $PKGS | awk '/^Inst /{v=$3; gsub(/[()]/,"",v); print $2"_"v}')
(( ${#DEBS[@]} > 0 )) || die "apt chose no packages for $PKGS"
n=0
for pv in "${DEBS[@]}"; do
  pkg=${pv%%_*}; ver=${pv#*_}; ver=${ver//:/%3a}
  case $pkg in perl|perl-base|perl-modules-*|libperl*) continue ;; esac   # mysqld needs no perl
  f=$(ls "$A/archives/${pkg}_${ver}"_*.deb 2>/dev/null | head -1)
  [[ -n $f ]] || die "deb for $pkg $ver not found in $A/archives"
  dpkg-deb -x "$f" "$P"; n=$((n+1))
done
rm -rf "$P"/usr/share/doc "$P"/usr/share/man "$P"/usr/share/locale
log "extracted $n debs: $(elapsed "$t")s"

LD=$P/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
VER=$("$LD" --library-path "$P/usr/lib/x86_64-linux-gnu" "$P/usr/sbin/mysqld" --version) \
  || die "the extracted mysqld does not run"
VER=${VER//$P/}
case $VER in *" 9.7."*) ;; *) log "WARNING: expected MySQL 9.7.x, $SUITE has: $VER" ;; esac
printf 'built=%s suite=%s\nmysqld=%s\n' "$(date -u +%FT%TZ)" "$SUITE" "$VER" >"$P/.rowstream-ready"
rm -rf --one-file-system "$ROOT"; mv "$P" "$ROOT"
rm -rf "$A/lists" "$A/cache" "$A/archives"     # re-fetched on a rebuild anyway
log "MySQL tree ready in $(elapsed "$T0")s: $ROOT ($(du -sh "$ROOT" | cut -f1)): $VER"
echo "$ROOT"
