# Sourced by quickstart.sh and test.sh, from the repository root.

# install_debs PKG...: install the Debian packages named (the missing ones). That needs root:
# as another user, one message naming them and how to install them, and status 1.
install_debs() {
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "skipnas: missing Debian packages: $*. Installing them needs root: run" \
         "'sudo apt-get install $*' (or this script as root), then this script again." >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
}

# make_venv [EXTRAS]: the virtual environment .venv (it sees the system's packages, so a torch
# already installed is reused, never downloaded again) with skipnas installed editable, at the
# versions the suite last passed with (constraints.txt, written by scripts/lock.py).
make_venv() {
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv --system-site-packages .venv
  .venv/bin/python -m pip install -q -e ".${1:+[$1]}" -c constraints.txt
}
