#!/usr/bin/env bash
# Builds wasmoon's Lua with native wasm exceptions for setjmp/longjmp
# (emscripten's -sSUPPORT_LONGJMP=wasm) instead of the JS-exception longjmp of
# the wasmoon topas ships, so bench/lua-yield-cost can measure whether a Lua
# yield gets cheaper that way (it does not on Node 20: see bench/README.md).
# An experiment for the bench only: topas itself keeps the npm wasmoon.
#
#   bash bench/build-lua-wasm-eh.sh [OUT_DIR] [wasm|emscripten]
#   node dist/bench/lua-yield-cost.js --wasmoon /tmp/topas-wasmoon-eh
#
# OUT_DIR defaults to /tmp/topas-wasmoon-eh. The second argument picks the
# longjmp: `wasm` (default) or `emscripten`, the JS-exception one of the npm
# build, for a control built by the same toolchain from the same Lua.
#
# Toolchain: Debian's emscripten 3.1.6 (apt); Lua 5.4.7 from Debian's pool,
# checked by sha256. OUT_DIR becomes a copy of node_modules/wasmoon whose glue
# (the emscripten module inside dist/index.js, and dist/glue.wasm) is the new
# build. Idempotent: skips the build when OUT_DIR already has it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-/tmp/topas-wasmoon-eh}"
LONGJMP="${2:-wasm}"
case "$LONGJMP" in wasm|emscripten) ;; *) echo "build-lua-wasm-eh: longjmp is wasm or emscripten, not $LONGJMP" >&2; exit 2;; esac
LUA_URL=http://deb.debian.org/debian/pool/main/l/lua5.4/lua5.4_5.4.7.orig.tar.gz
LUA_SHA256=9fbf5e28ef86c69858f6d3d34eccc32e911c1a28b4120ff3e84aaa70cfbf1e30

if [ -f "$OUT/.built-longjmp-$LONGJMP" ]; then echo "build-lua-wasm-eh: $OUT is built"; exit 0; fi
command -v emcc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq emscripten binaryen >/dev/null; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
curl -fsSL -o "$WORK/lua.tgz" "$LUA_URL"
echo "$LUA_SHA256  $WORK/lua.tgz" | sha256sum -c --quiet
tar -xzf "$WORK/lua.tgz" -C "$WORK"
LUA_SRC=$(ls "$WORK"/lua-5.4.7/src/*.c | grep -v -e '/lua\.c$' -e '/luac\.c$')

# emscripten 3.1.6 has no stringToNewUTF8 (wasmoon's glue calls it): the older name
echo 'function stringToNewUTF8(str) { return allocateUTF8(str); }' > "$WORK/pre.js"
# wasmoon's own exports (its build.sh), read from the npm build's glue so the lists agree
EXPORTS=$(node -e '
  const src = require("fs").readFileSync(process.argv[1], "utf8");
  const names = [...new Set([...src.matchAll(/\b_(lua[L]?_[A-Za-z_]+|luaopen_[a-z0-9]+|malloc|free|realloc)\b/g)].map((m) => "_" + m[1]))];
  process.stdout.write(JSON.stringify(names));
' "$ROOT/node_modules/wasmoon/dist/index.js")

# acorn for emcc's JS optimizer comes from Debian's node-acorn
NODE_PATH=/usr/share/nodejs emcc -O3 -s WASM=1 \
  -s SUPPORT_LONGJMP="$LONGJMP" \
  -o "$WORK/glue.js" --pre-js "$WORK/pre.js" \
  -s EXPORTED_RUNTIME_METHODS="['ccall','addFunction','removeFunction','FS','ENV','getValue','setValue','lengthBytesUTF8','stringToUTF8','allocateUTF8']" \
  -s INCOMING_MODULE_JS_API="['locateFile','preRun']" \
  -s ENVIRONMENT=web,worker,node -s MODULARIZE=1 -s EXPORT_NAME=initWasmModule \
  -s ALLOW_TABLE_GROWTH=1 -s ALLOW_MEMORY_GROWTH=1 -s STRICT=1 \
  -s NODEJS_CATCH_EXIT=0 -s NODEJS_CATCH_REJECTION=0 -s MALLOC=emmalloc \
  -s TOTAL_STACK=1MB -s WASM_BIGINT \
  -s EXPORTED_FUNCTIONS="$EXPORTS" \
  $LUA_SRC

rm -rf "$OUT" && cp -a "$ROOT/node_modules/wasmoon" "$OUT"
cp "$WORK/glue.wasm" "$OUT/dist/glue.wasm"
node - "$OUT/dist/index.js" "$WORK/glue.js" <<'EOF'
const fs = require('fs');
const [indexFile, glueFile] = process.argv.slice(2);
const src = fs.readFileSync(indexFile, 'utf8');
const start = src.indexOf('    var initWasmModule = (() => {');
const end = src.indexOf('    class LuaWasm {');
if (start < 0 || end < start) throw new Error('wasmoon dist/index.js: glue not found (another wasmoon version?)');
let glue = fs.readFileSync(glueFile, 'utf8');
// the UMD tail of emscripten's output would replace wasmoon's own module.exports
glue = glue.slice(0, glue.indexOf("if (typeof exports === 'object' && typeof module === 'object')"));
// 3.1.6 loads the wasm with fetch() whenever it exists, which Node 18+ has and which cannot read a path
const at = 'function instantiateAsync(){if(!wasmBinary&&';
if (glue.split(at).length !== 2) throw new Error('emscripten glue: instantiateAsync not found');
glue = glue.replace(at, at + '!ENVIRONMENT_IS_NODE&&');
fs.writeFileSync(indexFile, src.slice(0, start) + glue + '\n' + src.slice(end));
EOF
touch "$OUT/.built-longjmp-$LONGJMP"
echo "build-lua-wasm-eh: built $OUT (Lua 5.4.7, SUPPORT_LONGJMP=$LONGJMP)"
