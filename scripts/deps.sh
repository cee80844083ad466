#!/usr/bin/env bash
# Installs the Debian packages wakeline needs. Usage: scripts/deps.sh build|test
#   build: what compiling needs (cmake builds libopus; libasound2-dev for cpal; pkg-config)
#   test:  build + the real peers the tests start (sipp from sip-tester, kamailio, baresip),
#          iproute2, iptables and rtpengine for the multi-host tests (network namespaces, a NAT
#          router, a media anchor: tests/multihost.rs) and
#          the JACK dummy server behind ALSA that paces cpal's real device path on a machine with
#          no sound card; dnsmasq-base (the binary, no system service) serves SRV/NAPTR records
#          to the RFC 3263 tests (tests/dns.rs); kamailio-tls-modules for Kamailio over TLS
#          (tests/tls.rs); coturn (its turnserver, run as a bare STUN server) for the STUN test
#          behind the NAT router (tests/multihost.rs)
set -euo pipefail
want=(cmake pkg-config libasound2-dev)
if [ "${1:-build}" = test ]; then
  want+=(sip-tester jackd2 libasound2-plugins kamailio baresip iproute2 iptables rtpengine dnsmasq-base kamailio-tls-modules coturn)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
