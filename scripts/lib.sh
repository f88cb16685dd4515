# Shared shell helpers for scripts/*. Sourced, not run.

say() { printf '\033[1m[specdec]\033[0m %s\n' "$*"; }
die() { printf '[specdec] error: %s\n' "$*" >&2; exit 1; }

# The assets folder: $SPECDEC_ASSETS, else ../shared (these machines and CI), else assets/ (downloaded).
assets_dir() {
  if [ -n "${SPECDEC_ASSETS:-}" ]; then
    echo "$SPECDEC_ASSETS"
  elif [ -f "$ROOT/../shared/models/stories260K/stories260K.bin" ]; then
    (cd "$ROOT/../shared" && pwd)
  else
    echo "$ROOT/assets"
  fi
}
