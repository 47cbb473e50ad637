#!/usr/bin/env bash
# The entrypoint of the Kong image (kong/Dockerfile): renders the declarative
# configuration with its {vault://env/NAME} references resolved from the
# environment, then starts Kong on the rendered file.
#
# kong.yml holds no credential: each consumer's API key is a reference to an
# environment variable (set from .env in compose, from Secrets Manager on
# ECS). Kong DB-less does not resolve vault references in every field of a
# declarative file in every release (keyauth_credentials' keys among them), so
# this script resolves them once, at container start, the way Kong's env vault
# does: NAME with - read as _, in capitals. It stops the container, naming
# the variable and never its value, when a referenced variable is unset or
# empty, when a value is not a usable key (at least 24 characters of
# A-Z a-z 0-9 . _ ~ + / = -, so that it can neither break the YAML nor be
# guessed), when two references resolve to the same key, or when a reference
# it cannot resolve remains. Comment lines are copied as they are.
#
#   render-config.sh [COMMAND...]         render $ORDERFLOW_KONG_TEMPLATE into
#                                         $KONG_DECLARATIVE_CONFIG, then exec
#                                         Kong's own entrypoint with COMMAND
#   render-config.sh --render IN OUT      render IN into OUT and exit (tests)
set -euo pipefail

min_key_length=24

fail() {
  echo "render-config: $*" >&2
  exit 1
}

# render IN OUT writes IN to OUT with every {vault://env/NAME} resolved. OUT
# is written whole or not at all, readable by its owner only.
render() {
  local in=$1 out=$2
  [[ -r $in ]] || fail "cannot read the template $in"
  local ref_re='\{vault://env/([A-Za-z_][A-Za-z0-9_-]*)\}'
  local line rest name var value rendered="" problems=() n=0
  local -A seen=() # key value -> the variable that holds it
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    if [[ $line =~ ^[[:space:]]*# ]]; then
      rendered+=$line$'\n'
      continue
    fi
    rest=$line line=""
    while [[ $rest =~ $ref_re ]]; do
      name=${BASH_REMATCH[1]}
      var=${name//-/_}
      var=${var^^}
      line+=${rest%%"${BASH_REMATCH[0]}"*}
      rest=${rest#*"${BASH_REMATCH[0]}"}
      value=${!var-}
      if [[ -z $value ]]; then
        problems+=("line $n: $var is not set (referenced as {vault://env/$name})")
      elif ((${#value} < min_key_length)) || [[ ! $value =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
        problems+=("line $n: $var is not a usable key: it needs at least $min_key_length characters of A-Z a-z 0-9 . _ ~ + / = -")
      elif [[ -n ${seen[$value]-} && ${seen[$value]} != "$var" ]]; then
        problems+=("line $n: $var holds the same key as ${seen[$value]}: every consumer needs a key of its own")
      else
        seen[$value]=$var
      fi
      line+=$value
    done
    line+=$rest
    if [[ $line == *'{vault://'* ]]; then
      problems+=("line $n: a vault reference this script cannot resolve: only {vault://env/NAME} is supported")
    fi
    rendered+=$line$'\n'
  done <"$in"
  if ((${#problems[@]} > 0)); then
    printf 'render-config: %s\n' "${problems[@]}" >&2
    fail "$in not rendered; Kong not started"
  fi
  local dir tmp
  dir=$(dirname -- "$out")
  mkdir -p -- "$dir"
  tmp=$(umask 077 && mktemp "$dir/.kong.yml.XXXXXX")
  printf '%s' "$rendered" >"$tmp"
  mv -f -- "$tmp" "$out"
}

if [[ ${1-} == --render ]]; then
  (($# == 3)) || fail "usage: render-config.sh --render IN OUT"
  render "$2" "$3"
  exit 0
fi

: "${ORDERFLOW_KONG_TEMPLATE:?render-config: set ORDERFLOW_KONG_TEMPLATE to the declarative configuration to render}"
: "${KONG_DECLARATIVE_CONFIG:?render-config: set KONG_DECLARATIVE_CONFIG to the file Kong loads}"
[[ $ORDERFLOW_KONG_TEMPLATE != "$KONG_DECLARATIVE_CONFIG" ]] || fail "the template and the rendered file must differ"
render "$ORDERFLOW_KONG_TEMPLATE" "$KONG_DECLARATIVE_CONFIG"
echo "render-config: $KONG_DECLARATIVE_CONFIG rendered from $ORDERFLOW_KONG_TEMPLATE" >&2
if (($# == 0)); then
  set -- kong docker-start
fi
exec /docker-entrypoint.sh "$@"
