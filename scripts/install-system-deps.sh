#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages PeerCall and its tests need. Idempotent: it only calls
# apt-get when something is missing, so `make run` / `make test` stay fast on a set-up machine.
set -euo pipefail

packages=(
  # audio: PortAudio for sounddevice, a PulseAudio server for the virtual sound card in tests
  libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins
  # Qt offscreen and under Xvfb (without libxcb-icccm4/keysyms1 the xcb plugin fails to load)
  libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 fontconfig fonts-dejavu-core
  xvfb xauth libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
  libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1
  # interop peers for the tests: coturn's turnutils_* and reference turnserver, a real browser
  coturn chromium
  # network namespaces and loss/latency emulation for NAT tests; tone tools for audio checks
  iproute2 sox
  # the NAT lab (tests/netlab): nftables routers in namespaces; a home router speaking
  # UPnP-IGD/NAT-PMP/PCP (miniupnpd) and its client (upnpc) for the port-mapping tests
  nftables miniupnpd miniupnpc
  # shared room state for several signaling nodes (peercall signal --redis)
  redis-server
  python3-venv
  # the relay's optional C extension (nat/_mmsg_ext.c, recvmmsg/sendmmsg); without a compiler
  # and headers pip skips it and the relay runs its pure-Python UDP path
  gcc libc6-dev python3-dev
  # packaging: validators for the .desktop entry and AppStream metadata; objdump for PyInstaller
  desktop-file-utils appstream binutils
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "install-system-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# coturn's package enables a system turnserver on some releases; tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  $sudo systemctl disable --now coturn >/dev/null 2>&1 || true
fi
