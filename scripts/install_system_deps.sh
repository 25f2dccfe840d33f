#!/usr/bin/env bash
# System packages some tests use, installed when missing and when we may (root + apt).
# Nothing here is needed to use restorekit itself; tests that need a missing one skip.
set -u
# Debian package -> a command it provides; only the missing ones are installed.
declare -A provides=(
  [chromium]=/usr/bin/chromium               # headless browser for the HTML report test
  [chromium-driver]=/usr/bin/chromedriver    # WebDriver that Selenium drives it with
)
need=()
for pkg in "${!provides[@]}"; do
  [ -x "${provides[$pkg]}" ] || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" \
    || echo "warning: could not install ${need[*]}; tests that need them will skip" >&2
else
  echo "note: not root or no apt-get; install ${need[*]} yourself for the tests that use them" >&2
fi
exit 0
