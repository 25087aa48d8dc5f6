#!/bin/sh
# Build another commit of AgentGate into DIR, for `npm run bench -- --baseline DIR` (CPU per request
# before -> after, measured in the same run). Shares this checkout's node_modules; DIR is replaced.
#   bench/baseline.sh e68c703 /tmp/agentgate-before
set -eu
if [ $# -ne 2 ]; then echo "usage: bench/baseline.sh COMMIT DIR" >&2; exit 2; fi
root=$(cd "$(dirname "$0")/.." && pwd)
commit=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
git -C "$root" archive "$commit" | tar -x -C "$dir"
ln -s "$root/node_modules" "$dir/node_modules"
(cd "$dir" && "$root/node_modules/.bin/tsc" -p tsconfig.build.json)
echo "built $commit into $dir"
