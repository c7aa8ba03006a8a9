#!/usr/bin/env bash
# The portability check: runs the test suite (or a part of it) under several kernel settings and
# prints a table per setting and, for test_learns, per training seed.
#
# Why: oneDNN, OpenBLAS and ATen pick their kernels per CPU, so the same binary and seed round
# differently on another machine, and a test that trains and then asserts a margin can pass here and
# fail there (issue 25). Each setting below caps the kernels at what another x86-64 CPU family
# would use; settings the CPU cannot run are skipped (named in the output).
#
#   tests/portability.sh                 # the whole suite under every setting (about 6 min a setting on 2 cores)
#   tests/portability.sh -R test_learns  # one test (any ctest selection flag: -R, -L, -E)
#   tests/portability.sh --seeds 1,2,3,4,5 --settings "native haswell"
#   tests/portability.sh --mutant        # builds build-mutant with the loss's sign flipped; test_learns must fail
#   tests/portability.sh --demo DIR      # scripts/demo.sh under each setting (no suite), and the range of every number
#
# MART_BUILD (default ./build) is the build to test; scripts/test.sh builds it.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"

# name | CPU flags it needs | environment
SETTINGS_TABLE="
native      | -                                  | -
skylakex    | avx512f avx512bw avx512vl avx512dq | ONEDNN_MAX_CPU_ISA=AVX512_CORE OPENBLAS_CORETYPE=SkylakeX ATEN_CPU_CAPABILITY=avx2
haswell     | avx2 fma                           | ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2
zen         | avx2 fma                           | ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Zen ATEN_CPU_CAPABILITY=avx2
sandybridge | avx                                | ONEDNN_MAX_CPU_ISA=AVX OPENBLAS_CORETYPE=Sandybridge ATEN_CPU_CAPABILITY=default
nehalem     | sse4_1                             | ONEDNN_MAX_CPU_ISA=SSE41 OPENBLAS_CORETYPE=Nehalem ATEN_CPU_CAPABILITY=default
"
settings="native skylakex haswell sandybridge nehalem"  # zen: on the machines tried, Haswell's kernels again
seeds=""
demo=""
mutant=0
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --settings) settings=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --demo) demo=$2; shift 2 ;;
    --mutant) mutant=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ctest_args+=("$1"); shift ;;
  esac
done

setting_field() {  # NAME FIELD(2: flags, 3: environment)
  echo "$SETTINGS_TABLE" | awk -F'|' -v n="$1" -v f="$2" '{gsub(/ +$|^ +/, "", $1)} $1 == n {gsub(/^ +| +$/, "", $f); print $f}'
}
cpu_has() {  # FLAG...: all present in /proc/cpuinfo
  local f
  for f in "$@"; do grep -qw "$f" /proc/cpuinfo || return 1; done
}
runnable=()
for s in $settings; do
  flags=$(setting_field "$s" 2)
  if [ -z "$flags" ]; then echo "portability: unknown setting '$s' (known: $(echo "$SETTINGS_TABLE" | awk -F'|' 'NF>1{printf "%s", $1}'))" >&2; exit 2; fi
  # shellcheck disable=SC2086
  if [ "$flags" = "-" ] || cpu_has $flags; then runnable+=("$s"); else echo "portability: skipping $s (this CPU lacks $flags)"; fi
done
setting_env() { local e; e=$(setting_field "$1" 3); [ "$e" = "-" ] || echo "$e"; }

OUT=$(mktemp -d "${TMPDIR:-/tmp}/mart-portability.XXXXXX")
echo "portability: logs in $OUT; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

if [ $mutant = 1 ]; then
  # A build whose loss has its sign flipped: gradient ascent on the contrastive loss. test_learns
  # must fail under every setting, or it cannot tell learning from its absence.
  MB=${MART_MUTANT_BUILD:-$MART_ROOT/build-mutant}
  cmake -S "$MART_ROOT" -B "$MB" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMART_MUTANT_FLIP_LOSS_SIGN=ON -DMART_BUILD_BENCH=OFF >/dev/null
  cmake --build "$MB" -j "$MART_JOBS" --target test_learns mart-synth mart-preprocess mart-train mart-eval
  MART_BUILD=$MB
  ctest_args=(-R '^test_learns$')
fi

results=()  # "setting|test|status"
[ -n "$demo" ] && runnable_suite=() || runnable_suite=("${runnable[@]}")  # --demo: the demo alone
for s in "${runnable_suite[@]}"; do
  log="$OUT/$s.log"
  env_text=$(setting_env "$s")
  echo "portability: $s: ${env_text:-no cap, the kernels this CPU picks}"
  start=$(date +%s)
  # shellcheck disable=SC2046
  env $(setting_env "$s") ${seeds:+MART_LEARNS_SEEDS=$seeds} \
    ctest --test-dir "$MART_BUILD" -V --timeout 1800 "${ctest_args[@]}" >"$log" 2>&1 || true
  n_pass=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$log" || true)
  n_fail=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Timeout|Exception|Not Run)' "$log" || true)
  echo "portability: $s: $n_pass passed, $n_fail failed in $(( $(date +%s) - start )) s"
  while read -r name status; do results+=("$s|$name|$status"); done < <(
    sed -nE 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+) \.*[ *]*([A-Za-z]+).*/\1 \2/p' "$log")
done

if [ ${#runnable_suite[@]} -gt 0 ]; then
echo
echo "## Suite per setting"
echo
echo "| setting | environment | passed | failed |"
echo "|---|---|---|---|"
fi
for s in "${runnable_suite[@]}"; do
  p=0; f=0; failed=""
  for r in "${results[@]}"; do
    IFS='|' read -r rs name status <<<"$r"
    [ "$rs" = "$s" ] || continue
    if [ "$status" = Passed ]; then p=$((p + 1)); else f=$((f + 1)); failed+=" $name"; fi
  done
  env_text=$(setting_env "$s")
  if [ -n "$env_text" ]; then env_text="\`$env_text\`"; else env_text="none: the kernels this CPU picks"; fi
  echo "| $s | $env_text | $p | $f${failed:+ ($failed )} |"
done

if grep -q '^[0-9]*: learns: ' "$OUT"/*.log 2>/dev/null; then
  echo
  echo "## test_learns per training seed (lift = pretrained minus random init; the test asserts the mean)"
  echo
  echo "margins (mean lift must exceed): $(grep -h -oE 'learns: mean of [0-9]+ seeds \| [^|]+ lift [-+0-9.]+ \| margin [-0-9.]+' "$OUT"/*.log |
    sed -E 's/.*\| ([^|]+) lift .*margin (.*)/\1 \2/' | sort -u | paste -sd';' | sed 's/;/, /g')"
  echo
  echo "| setting | seed | tagging ROC-AUC lift | tagging PR-AUC lift | classification ROC-AUC lift | test |"
  echo "|---|---|---|---|---|---|"
  for s in "${runnable[@]}"; do
    log="$OUT/$s.log"
    status=$(sed -nE 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: test_learns \.*[ *]*([A-Za-z]+).*/\1/p' "$log")
    sed -nE 's/^[0-9]+: learns: seed ([0-9]+) \| ([^|]+) \|.*lift ([-+0-9.]+)$/\1|\2|\3/p' "$log" |
      awk -F'|' -v s="$s" '{gsub(/ +$/, "", $2); lift[$1, $2] = $3; if (!($1 in seen)) {seen[$1] = 1; order[++n] = $1}}
        END {for (i = 1; i <= n; i++) {k = order[i]
               printf "| %s | %s | %s | %s | %s | |\n", s, k, lift[k, "tagging ROC-AUC"], lift[k, "tagging PR-AUC"], lift[k, "classification ROC-AUC"]}}'
    sed -nE 's/^[0-9]+: learns: mean of ([0-9]+) seeds \| ([^|]+) lift ([-+0-9.]+).*/\2|\3|\1/p' "$log" |
      awk -F'|' -v s="$s" -v st="$status" '{gsub(/ +$/, "", $1); m[$1] = $2; n = $3}
        END {if (n) printf "| %s | mean of %s | %s | %s | %s | %s |\n", s, n, m["tagging ROC-AUC"], m["tagging PR-AUC"], m["classification ROC-AUC"], st}'
  done
fi

if [ -n "$demo" ]; then
  # The README's demo command, whole, under each setting.
  mkdir -p "$demo"
  for s in "${runnable[@]}"; do
    echo "portability: demo under $s -> $demo/$s (log $OUT/demo-$s.log)"
    # shellcheck disable=SC2046
    env $(setting_env "$s") MART_DEMO="$demo/$s" bash "$MART_ROOT/scripts/demo.sh" >"$OUT/demo-$s.log" 2>&1 || { echo "portability: the demo failed under $s" >&2; exit 1; }
  done
  echo
  echo "## The demo's numbers per setting (mean over probe seeds; range = min..max over the settings)"
  echo
  /usr/bin/python3 "$MART_ROOT/tests/python/demo_spread.py" "$demo" "${runnable[@]}"
fi

fails=0
for r in "${results[@]}"; do case "$r" in *"|Passed") ;; *) fails=$((fails + 1)) ;; esac; done
if [ $mutant = 1 ]; then
  if [ "$fails" -eq "${#runnable[@]}" ]; then echo; echo "portability: the mutant (loss sign flipped) failed test_learns under every setting, as it must"; exit 0; fi
  echo; echo "portability: the mutant passed test_learns under some setting: the test cannot tell learning from its absence" >&2; exit 1
fi
exit $(( fails > 0 ))
