#!/usr/bin/env bash
# The include rules of the README's architecture section, checked on the
# #include lines of every C, header and CUDA file:
#   kernels/   includes nothing from topology/, sim/ or real/;
#   topology/  includes only kernels/;
#   sim/       includes kernels/, topology/ and sim/ (never real/);
#   SimGrid headers (<simgrid/...>, <xbt...>) only in sim/simgrid/;
#   real/      never includes sim/simgrid/;
#   output writers and benchmarks never include the scenario parser;
#   no module (a .c/.cu and its .h) depends on itself through others.
# Prints each violation as file:line and exits 1 if there is any.
#   tests/check_includes.sh [SOURCE_DIR]
set -euo pipefail
cd "${1:-$(dirname "${BASH_SOURCE[0]}")/..}"
dirs=(kernels topology sim real tests)
files=$({ git ls-files -- "${dirs[@]/%//*.c}" "${dirs[@]/%//*.h}" "${dirs[@]/%//*.cu}" 2>/dev/null ||
  find "${dirs[@]}" -name '*.[ch]' -o -name '*.cu'; } | sort -u)
# The folder of each project header, by name (names are unique over the tree).
declare -A home
dups=0
for f in $files; do
  case $f in *.h) ;; *) continue ;; esac
  b=$(basename "$f")
  if [ -n "${home[$b]:-}" ]; then
    echo "$f: header name $b also in ${home[$b]} (header names must be unique)"
    dups=1
  fi
  home[$b]=$(dirname "$f")
done
# The scenario parser's headers, which outputs and benchmarks must not include.
parser_headers=" ep_scenario.h ep_keyfile.h "

bad=$dups
edges=""
for f in $files; do
  dir=$(dirname "$f")
  top=${dir%%/*}
  mod=${f%.*}
  is_writer=0
  case $(basename "$f") in ep_output.* | ep_report.* | ep_trace.* | *bench*) is_writer=1 ;; esac
  while IFS=: read -r line text; do
    [ -n "$line" ] || continue
    if [[ $text =~ \#[[:space:]]*include[[:space:]]*\<(simgrid/|xbt) ]]; then
      [ "$dir" = sim/simgrid ] || { echo "$f:$line: SimGrid header outside sim/simgrid/: $text"; bad=1; }
      continue
    fi
    [[ $text =~ \#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]] || continue
    name=$(basename "${BASH_REMATCH[1]}")
    to=${home[$name]:-}
    [ -n "$to" ] || continue # generated (ep_config.h) or system header
    to_top=${to%%/*}
    case $top in
    kernels) [ "$to_top" = kernels ] || { echo "$f:$line: kernels/ includes $to/$name"; bad=1; } ;;
    topology) case $to_top in kernels | topology) ;; *) echo "$f:$line: topology/ includes $to/$name"; bad=1 ;; esac ;;
    sim) case $to_top in kernels | topology | sim) ;; *) echo "$f:$line: sim/ includes $to/$name"; bad=1 ;; esac ;;
    real) [ "$to" != sim/simgrid ] || { echo "$f:$line: real/ includes $to/$name"; bad=1; } ;;
    esac
    if [ "$is_writer" = 1 ] && [[ $parser_headers == *" $name "* ]]; then
      echo "$f:$line: an output writer or benchmark includes the scenario parser ($name)"
      bad=1
    fi
    [ "$top" = tests ] || [ "$to/${name%.h}" = "$mod" ] || edges+="$mod $to/${name%.h}"$'\n'
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$f" || true)
done

# Module cycles: depth-first search over "a b" edges (a's files include b's header).
cycles=$(printf '%s' "$edges" | sort -u | awk '
  { adj[$1] = adj[$1] " " $2; nodes[$1] = 1; nodes[$2] = 1 }
  function dfs(u, path,   n, i, v, list) {
    state[u] = 1
    n = split(adj[u], list, " ")
    for (i = 1; i <= n; i++) {
      v = list[i]
      if (state[v] == 1) { print "module cycle: " path " -> " v; found = 1 }
      else if (state[v] == 0) dfs(v, path " -> " v)
    }
    state[u] = 2
  }
  END { for (u in nodes) if (state[u] == 0) dfs(u, u); exit found }') || bad=1
[ -z "$cycles" ] || echo "$cycles"
if [ "$bad" = 0 ]; then echo "check_includes: ok ($(echo "$files" | wc -w) files)"; fi
exit "$bad"
