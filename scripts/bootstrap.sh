#!/usr/bin/env bash
# Create .venv with a Python >= 3.12 and install citytwin into it (editable, with the dev extra).
# Idempotent: reinstalls only when pyproject.toml changed. Extra pip extras via CITYTWIN_EXTRAS
# (e.g. CITYTWIN_EXTRAS=dev,sumo).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
extras=${CITYTWIN_EXTRAS:-dev}

is_py312() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

find_python() {
    local candidate
    if [ -n "${PYTHON:-}" ] && is_py312 "$PYTHON"; then echo "$PYTHON"; return; fi
    for candidate in python3.14 python3.13 python3.12 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && is_py312 "$(command -v "$candidate")"; then
            command -v "$candidate"; return
        fi
    done
    # pyenv installs whose shims are not active
    local root=${PYENV_ROOT:-}
    if [ -z "$root" ] && command -v pyenv >/dev/null 2>&1; then root=$(pyenv root); fi
    [ -n "$root" ] || root=$HOME/.pyenv
    for candidate in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -rV); do
        if is_py312 "$candidate/bin/python"; then echo "$candidate/bin/python"; return; fi
    done
    # uv-managed Pythons
    if command -v uv >/dev/null 2>&1; then
        candidate=$(uv python find '>=3.12' 2>/dev/null || true)
        if [ -n "$candidate" ] && is_py312 "$candidate"; then echo "$candidate"; return; fi
        if uv python install 3.12 >/dev/null 2>&1; then
            candidate=$(uv python find '>=3.12')
            if is_py312 "$candidate"; then echo "$candidate"; return; fi
        fi
    fi
    return 1
}

if [ ! -x "$venv/bin/python" ] || ! is_py312 "$venv/bin/python"; then
    python=$(find_python) || {
        echo "bootstrap: no Python >= 3.12 found (tried PYTHON, python3.1x, pyenv, uv)." >&2
        echo "bootstrap: install one (e.g. 'pyenv install 3.12' or 'uv python install 3.12')." >&2
        exit 2
    }
    echo "bootstrap: creating $venv with $python ($("$python" --version 2>&1))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi

stamp=$venv/.citytwin-installed  # line 1: hash of pyproject.toml; line 2: extras installed
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
have_hash=$(sed -n 1p "$stamp" 2>/dev/null || true)
have_extras=$(sed -n 2p "$stamp" 2>/dev/null || true)
missing=""
for extra in ${extras//,/ }; do
    case ",$have_extras," in *",$extra,"*) ;; *) missing="$missing $extra" ;; esac
done
if [ "$hash" != "$have_hash" ] || [ -n "$missing" ]; then
    [ "$hash" = "$have_hash" ] && extras="$have_extras,${extras}"
    echo "bootstrap: installing citytwin[$extras] into $venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e ".[$extras]" 2> "$venv/pip-install.log" || {
        cat "$venv/pip-install.log" >&2
        exit 1
    }
    printf '%s\n%s\n' "$hash" "$extras" > "$stamp"
fi
