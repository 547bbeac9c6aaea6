#!/usr/bin/env bash
# scenarios/mutants.sh: each shipped scenario must fail against a client with the bug it targets.
#
# Every scenarios/mutants/NAME.patch is one deliberate bug in libiotc (mostly its engine,
# client/src/core/); its header names the scenarios that must catch it:
#     # targets: drain.scn drain-drop.scn
# For each mutant: copy the working tree (cp -r, so uncommitted changes are included and nothing
# in the tree is touched), apply the patch, build iotc-agent, run the targeted scenarios against it
# and require that every one of them FAILS.  One pristine copy is built first; its iotsim serves
# every mutant (only the agent changes), and its agent runs all targeted scenarios once as a
# baseline (they must pass there, or a "kill" would mean nothing).
#
#   bash scenarios/mutants.sh                       # every mutant
#   bash scenarios/mutants.sh drain-lifo jitter-ignored
#   BASELINE=0 KEEP=1 bash scenarios/mutants.sh     # skip the baseline; keep the temporary directory
#
# Prints mutant -> scenario -> killed | SURVIVED, the first lines of each failure, and a summary.
# Exit status: 0 every mutant killed by every targeted scenario; 1 a mutant survived a scenario;
# 2 a mutant did not apply or compile, or the baseline failed.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MDIR=$ROOT/scenarios/mutants
JOBS=${JOBS:-2}
T0=$(date +%s.%N)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iotc-mutants.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "work directory (kept): $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi

copy_tree() { # DEST: the sources a build of the agent and iotsim needs, as they are in the working tree
    mkdir -p "$1"
    local d
    for d in client broker-sim Makefile fuzz bench scenarios ci; do
        [ -e "$ROOT/$d" ] && cp -r "$ROOT/$d" "$1/"
    done
    rm -rf "$1/scenarios/mutants"
}

targets_of() { sed -n 's/^# targets: *//p' "$1" | head -1; }

if [ $# -gt 0 ]; then
    PATCHES=(); for n in "$@"; do PATCHES+=("$MDIR/${n%.patch}.patch"); done
else
    PATCHES=("$MDIR"/*.patch)
fi

# ---- the pristine build: iotsim for everyone, the baseline agent ----------------------------
echo "== pristine copy: building iotc-agent and iotsim"
copy_tree "$WORK/base"
if ! (cd "$WORK/base" && make -j"$JOBS" B="$WORK/base/build" "$WORK/base/build/bin/iotc-agent" \
        "$WORK/base/build/bin/iotsim") >"$WORK/base/build.log" 2>&1; then
    tail -30 "$WORK/base/build.log"; echo "the pristine copy does not build"; exit 2
fi
IOTSIM=$WORK/base/build/bin/iotsim

run_scn() { # AGENT REPORTDIR SCN...: runs the scenarios; report.json in REPORTDIR
    local agent=$1 rep=$2; shift 2
    mkdir -p "$WORK/scn"  # run.py keeps a failed scenario's directory: inside $WORK, not in /tmp
    (cd "$WORK/base" && TMPDIR="$WORK/scn" python3 scenarios/run.py -j "$JOBS" --iotsim "$IOTSIM" --agent "$agent" --report "$rep" \
        "${@/#/scenarios/}") >"$rep.out" 2>&1
}

# report.json -> one line per scenario: NAME STATUS, then the failure's first lines indented
summarize() {
    python3 - "$1" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["scenarios"]:
    print("%s %s" % (r["scenario"], r["status"]))
    if r["status"] != "pass":
        print("    at %s: %s" % (r.get("where"), r.get("statement")))
        print("    expected: %s" % r.get("expected"))
        print("    seen:     %s" % str(r.get("seen"))[:300])
EOF
}

if [ "${BASELINE:-1}" = 1 ]; then
    ALL=$(for p in "${PATCHES[@]}"; do targets_of "$p"; done | tr ' ' '\n' | sort -u | tr '\n' ' ')
    echo "== baseline: the targeted scenarios against the unmutated agent: $ALL"
    mkdir -p "$WORK/baseline"
    run_scn "$WORK/base/build/bin/iotc-agent" "$WORK/baseline/report" $ALL
    if [ ! -f "$WORK/baseline/report/report.json" ]; then cat "$WORK/baseline/report.out"; exit 2; fi
    summarize "$WORK/baseline/report/report.json"
    if grep -q '"status": "\(fail\|error\)"' "$WORK/baseline/report/report.json"; then
        echo "the baseline fails: no mutant can be judged"; exit 2
    fi
fi

# ---- the mutants ----------------------------------------------------------------------------
RESULTS=() # "mutant|scenario|verdict|status"
bad=0; survived=0
for p in "${PATCHES[@]}"; do
    m=$(basename "$p" .patch)
    if [ ! -f "$p" ]; then echo "== $m: no such mutant ($p)"; RESULTS+=("$m|-|NO PATCH|-"); bad=1; continue; fi
    read -r -a scns <<<"$(targets_of "$p")"
    if [ ${#scns[@]} -eq 0 ]; then echo "== $m: no '# targets:' line"; RESULTS+=("$m|-|NO TARGETS|-"); bad=1; continue; fi
    d=$WORK/m-$m
    copy_tree "$d"
    echo "== $m: $(sed -n '3p' "$p" | sed 's/^# //')"
    if ! (cd "$d" && patch -p1 --no-backup-if-mismatch -s <"$p") >"$d.patch.log" 2>&1; then
        sed 's/^/    /' "$d.patch.log"; RESULTS+=("$m|-|DID NOT APPLY|-"); bad=1; continue
    fi
    if ! (cd "$d" && make -j"$JOBS" B="$d/build" "$d/build/bin/iotc-agent") >"$d.build.log" 2>&1; then
        grep -m5 -i 'error' "$d.build.log" | sed 's/^/    /'; RESULTS+=("$m|-|DID NOT COMPILE|-"); bad=1; continue
    fi
    run_scn "$d/build/bin/iotc-agent" "$d.report" "${scns[@]}"
    if [ ! -f "$d.report/report.json" ]; then
        tail -20 "$d.report.out" | sed 's/^/    /'; RESULTS+=("$m|${scns[*]}|RUNNER ERROR|-"); bad=1; continue
    fi
    while IFS= read -r line; do
        case "$line" in
            "    "*) echo "$line" ;;
            *)  s=${line% *}; st=${line##* }
                if [ "$st" = pass ]; then v=SURVIVED; survived=1; else v=killed; fi
                echo "  $m -> $s -> $v ($st)"
                RESULTS+=("$m|$s|$v|$st") ;;
        esac
    done < <(summarize "$d.report/report.json")
    [ "${KEEP:-0}" = 1 ] || rm -rf "$d"
done

T1=$(date +%s.%N)
echo
printf '%-32s %-24s %s\n' mutant scenario result
for r in "${RESULTS[@]}"; do IFS='|' read -r m s v st <<<"$r"; printf '%-32s %-24s %s\n' "$m" "$s" "$v"; done
k=$(printf '%s\n' "${RESULTS[@]}" | grep -c '|killed|' || true)
echo
echo "$k killed of ${#RESULTS[@]} mutant/scenario pairs; wall $(python3 -c "print('%.1f s' % ($T1 - $T0))")"
[ $bad = 1 ] && exit 2
[ $survived = 1 ] && exit 1
exit 0
