#!/usr/bin/env bash
# Optional: install the Debian text packages behind `data=gcide` (data.source=deb:dict-gcide).
# Nothing else needs them; the tests that do skip, naming this script, when they are absent.
# Debian/Ubuntu only; needs root (or sudo). dict-gcide: ~15 MB download, ~40 MB of text. License: docs/DATA.md.
set -euo pipefail
PACKAGES=(dict-gcide)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then echo "installed: ${PACKAGES[*]}"; exit 0; fi
command -v apt-get >/dev/null || { echo "error: apt-get not found; this source needs a Debian-based system" >&2; exit 2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "error: run as root (or install sudo) to apt-get install ${missing[*]}" >&2; exit 2; }
  SUDO=sudo
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"
