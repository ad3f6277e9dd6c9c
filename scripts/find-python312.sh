#!/usr/bin/env bash
# Print the path of a working Python 3.12 interpreter, or explain and fail.
# Order: $PYTHON, python3.12 on PATH, pyenv's 3.12 versions, uv-managed ones.
set -euo pipefail
try() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' >/dev/null 2>&1; }
for candidate in "${PYTHON:-}" python3.12 \
    $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r) \
    $(ls -d "$HOME"/.local/share/uv/python/cpython-3.12*/bin/python3.12 2>/dev/null | sort -V -r) \
    /usr/bin/python3.12 /usr/local/bin/python3.12; do
  [ -n "$candidate" ] || continue
  if try "$candidate"; then command -v "$candidate" || echo "$candidate"; exit 0; fi
done
echo "Python 3.12 not found. Install it (e.g. 'pyenv install 3.12' or your OS package)" \
     "or point PYTHON=/path/to/python3.12 at it." >&2
exit 1
