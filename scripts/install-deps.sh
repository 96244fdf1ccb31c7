#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need; idempotent.
# Only what is missing is installed, so a second run is a few dpkg queries.
# Works as root or through sudo.
set -euo pipefail

packages=(
  pkg-config
  libopencv-dev   # video/vision/stream workers (opencv crate, Debian's OpenCV 4.6)
  clang           # the opencv crate generates its bindings with libclang
  libclang-dev
  chromium        # dashboard test in a real headless browser
  python3-venv    # .venv/ for the billiards_shm Python package (scripts/python-env.sh)
  python3-dev     # Python headers for building billiards_shm (PyO3)
  nasm            # openh264 (stream worker H.264): without it the source build silently drops its assembly and encodes much slower
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all Debian packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-deps: missing packages (${missing[*]}) and not root; run this script as root or install sudo" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
