# Sourced by the scripts in this folder: create .venv with Python 3.11 if missing and install
# knowtrace (editable) with the extras given in KNOWTRACE_EXTRAS. Re-installs only when
# pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $PYTHON" >&2
    "$PYTHON" -m venv .venv
fi
EXTRAS="${KNOWTRACE_EXTRAS:-}"
STAMP=".venv/.knowtrace-installed"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1) [$EXTRAS]"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "installing knowtrace${EXTRAS:+[$EXTRAS]} into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
    echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
