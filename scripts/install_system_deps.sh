#!/usr/bin/env bash
# System packages some tests use, installed when missing and when we may (root + apt-get).
# Nothing here is needed to use restorekit itself.
# Exits 0 when every one is there (already, or once installed) and 1, naming them, when some are
# still missing. The Makefile makes that fatal in CI (CI=true) and a warning elsewhere, where the
# tests that need them skip. RESTOREKIT_SYSROOT (tests only) is where / is.
set -u
root="${RESTOREKIT_SYSROOT:-}"
# Debian package -> a file it installs; only the missing ones are installed.
declare -A provides=(
  [chromium]=/usr/bin/chromium               # headless browser for the HTML report test
  [chromium-driver]=/usr/bin/chromedriver    # WebDriver that Selenium drives it with
)

missing() {
  local pkg
  for pkg in "${!provides[@]}"; do
    [ -x "$root${provides[$pkg]}" ] || echo "$pkg"
  done
}

need=($(missing))
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  need=($(missing))
  if [ ${#need[@]} -eq 0 ]; then exit 0; fi
  echo "error: apt-get could not install ${need[*]}; the tests that use them cannot run" >&2
else
  echo "error: ${need[*]} missing, and installing needs root and apt-get; install them yourself" \
       "for the tests that use them" >&2
fi
exit 1
