#!/usr/bin/env bash
# A Ray node for effvit-nas, with Ray 2.60's token authentication set up (runners/README.md).
#
#   bash runners/ray_node.sh head [PORT]                  # this machine is the head (default port 6379)
#   bash runners/ray_node.sh join HEAD:PORT [TOKEN_FILE]  # join; TOKEN_FILE: a copy of the head's ~/.ray/auth_token
#   bash runners/ray_node.sh stop
#
# Every process of the cluster runs with RAY_AUTH_MODE=token; the head creates ~/.ray/auth_token
# when missing, a joining node must hold the same file (given here, or copied there before).
# $RAY overrides the command that runs Ray (default: `uv run ray`, from this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=token RAY_ENABLE_UV_RUN_RUNTIME_ENV=0
read -r -a ray <<<"${RAY:-uv run ray}"
token="$HOME/.ray/auth_token"

usage() { sed -n '4,6p' "$0" | sed 's/^# *//' >&2; exit 2; }

case "${1:-}" in
  head)
    "${ray[@]}" get-auth-token --generate >/dev/null  # keeps an existing token
    exec "${ray[@]}" start --head --port "${2:-6379}"
    ;;
  join)
    [ -n "${2:-}" ] || usage
    if [ -n "${3:-}" ]; then
      [ -f "$3" ] || { echo "error: token file $3 does not exist" >&2; exit 2; }
      mkdir -p "$HOME/.ray" && install -m 600 "$3" "$token"
    fi
    [ -f "$token" ] || { echo "error: no $token: copy the head's ~/.ray/auth_token here or pass it as TOKEN_FILE" >&2; exit 2; }
    exec "${ray[@]}" start --address "$2"
    ;;
  stop) exec "${ray[@]}" stop ;;
  *) usage ;;
esac
