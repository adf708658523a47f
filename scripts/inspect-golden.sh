#!/usr/bin/env bash
# Decoder output guard for performance work: `mrte inspect -f jsonl` of every capture in
# tests/fixtures (and tests/fixtures/hostile, and any extra captures given) saved once, then
# compared byte for byte after each change.
# Usage: [FORMAT=jsonl|text|summary|digest] scripts/inspect-golden.sh save|check DIR [MRTE [extra.pcap...]]
#   save: writes DIR/<name>.<format>; check: diffs against them, exits 1 on any difference.
#   FORMAT: the `-f` given to inspect (default jsonl); ARGS: extra inspect flags.
set -uo pipefail
cd "$(dirname "$0")/.."
FORMAT=${FORMAT:-jsonl}
MODE=${1:?save|check}; DIR=${2:?directory}; MRTE=${3:-target/release/mrte}; shift 3 2>/dev/null || shift $#
mkdir -p "$DIR"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
files=(tests/fixtures/*.pcap tests/fixtures/*.pcap.gz tests/fixtures/hostile/*.pcap* "$@")
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  name=$(echo "$f" | tr / _)
  in=$f
  case "$f" in *.gz) in=$tmp/$(basename "$f" .gz); gzip -dc "$f" >"$in" ;; esac
  out=$tmp/$name.$FORMAT
  # shellcheck disable=SC2086
  "$MRTE" inspect -r "$in" -f "$FORMAT" ${ARGS:-} >"$out" 2>/dev/null; echo "exit $?" >>"$out"
  if [ "$MODE" = save ]; then cp "$out" "$DIR/$name.$FORMAT"
  elif ! cmp -s "$out" "$DIR/$name.$FORMAT"; then echo "DIFFERS: $f" >&2; diff "$DIR/$name.$FORMAT" "$out" | head -5 >&2; bad=1
  fi
done
[ "$MODE" = check ] && { [ $bad = 0 ] && echo "inspect-golden: ${#files[@]} captures identical"; }
exit $bad
