#!/usr/bin/env bash
# Render a report.html in headless Chromium and save a screenshot, to check by eye
# that the page draws offline (figures embedded, tables laid out).
#
#   bash scripts/check_report.sh DIR_OR_REPORT_HTML [SCREENSHOT.png]
#
# Installs Debian's `chromium` with apt-get when it is missing (needs root or sudo).
# Network features are switched off so the page can only show what it embeds.
set -euo pipefail

target=${1:?usage: check_report.sh DIR_OR_REPORT_HTML [SCREENSHOT.png]}
[ -d "$target" ] && target=$target/report.html
[ -f "$target" ] || { echo "error: $target not found (run lingcollapse report DIR first)" >&2; exit 2; }
page=$(realpath "$target")
shot=$(realpath -m "${2:-${page%.html}.png}")

if ! command -v chromium >/dev/null 2>&1; then
    echo "check_report: installing Debian's chromium" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

# The page must not reach out: no http(s) src/href in it.
if grep -Eqi "(src|href)=['\"]?https?:" "$page"; then
    echo "error: $page references external resources" >&2
    exit 1
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --screenshot="$shot" \
    --window-size=1400,3000 "file://$page" 2>/dev/null
[ -s "$shot" ] || { echo "error: chromium wrote no screenshot" >&2; exit 1; }
echo "$shot"
