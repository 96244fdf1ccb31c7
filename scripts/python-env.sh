#!/usr/bin/env bash
# Creates the virtualenv .venv/ in the repository (ignored by git), installs the pinned Python
# tools into it, then builds billiards_shm (shm-core/python) and installs it there.
# Idempotent and quick when nothing changed: the tools are installed once per requirements
# set, and the package is rebuilt only when its sources (or shm-core's, or config's) changed.
#
#   scripts/python-env.sh            # then: .venv/bin/python -c 'import billiards_shm'
#   PYTHON=python3.12 scripts/python-env.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
# maturin's build backend runs the maturin executable from PATH.
export PATH="$venv/bin:$PATH"

# Pinned: the versions the test suite and docs/BENCHMARKS.md were run with.
requirements=(maturin==1.8.7 numpy==2.2.6 pytest==8.4.1)

if [ ! -x "$venv/bin/python" ]; then
  echo "python-env: creating $venv with $($python --version 2>&1)"
  if ! "$python" -m venv "$venv"; then
    echo "python-env: cannot create a virtualenv; install python3-venv (scripts/install-deps.sh)" >&2
    exit 1
  fi
fi

tools_stamp="$venv/.billiards-tools"
want_tools="${requirements[*]}"
if [ "$(cat "$tools_stamp" 2>/dev/null)" != "$want_tools" ]; then
  echo "python-env: installing ${requirements[*]}"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
  echo "$want_tools" >"$tools_stamp"
fi

# Everything the extension is built from.
sources_hash=$(cd "$root" && find shm-core/src shm-core/Cargo.toml shm-core/python/src \
    shm-core/python/python shm-core/python/Cargo.toml shm-core/python/pyproject.toml \
    config/src config/Cargo.toml Cargo.lock -type f -not -name '*.pyc' -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
pkg_stamp="$venv/.billiards-shm-build"
if [ "$(cat "$pkg_stamp" 2>/dev/null)" != "$sources_hash" ] \
    || ! "$venv/bin/python" -c 'import billiards_shm' 2>/dev/null; then
  echo "python-env: building and installing billiards_shm (shm-core/python)"
  # No build isolation: maturin is already in the venv, so nothing is downloaded per build and
  # cargo reuses the workspace's target/ directory.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
    --force-reinstall --no-deps "$root/shm-core/python"
  echo "$sources_hash" >"$pkg_stamp"
fi
echo "python-env: $venv ready ($("$venv/bin/python" -c 'import billiards_shm, numpy; print("billiards_shm", billiards_shm.__file__.rsplit("/", 2)[-2], "numpy", numpy.__version__)'))"
