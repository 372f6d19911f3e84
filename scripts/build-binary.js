#!/usr/bin/env node
'use strict';
// Builds dist/topas: a single executable for this platform (Node SEA), offline.
//   1. esbuild bundles src/sea/entry.ts (the CLI) and src/run/scenario-worker.ts
//      (the worker thread script) into CommonJS files with every package inlined;
//   2. the worker, wasmoon's glue.wasm and lua-types/ become SEA assets
//      (src/sea/assets.ts reads them back);
//   3. node --experimental-sea-config makes the blob, postject injects it into a
//      copy of this node binary.
// Embedded PostgreSQL's native files stay outside (src/sea/postgres-binaries.ts finds them).
// Usage: node scripts/build-binary.js [--out dist/topas]

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const esbuild = require('esbuild');

const ROOT = path.resolve(__dirname, '..');
const WORK = path.join(ROOT, 'dist', 'sea-build');
const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

function outPath() {
  const i = process.argv.indexOf('--out');
  return path.resolve(ROOT, i > 0 ? process.argv[i + 1] : path.join('dist', 'topas'));
}

// Left to a runtime require (and allowed to fail there): native addons and optional peers;
// typescript is what @oclif/core reads tsconfig with in development only.
const EXTERNAL = ['*.node', 'typescript', 'pg-native', 'cpu-features', 'bufferutil', 'utf-8-validate', 'ts-node', 'tsx', '@swc/core'];

// In the SEA main script `require` only loads builtins; packages left external (and any
// require of a path at run time) should resolve from where the file lies instead.
// ESM packages bundled into CommonJS read import.meta.url (fdir: createRequire(import.meta.url)).
const BANNER = "require = require('node:module').createRequire(__filename); var __topas_import_meta_url = require('node:url').pathToFileURL(__filename).href;";

/** Deep imports that a package's "exports" hides (the oclif plugin's command classes). */
const deepImports = {
  name: 'deep-imports',
  setup(build) {
    build.onResolve({ filter: /^@oclif\/plugin-autocomplete\/lib\// }, (args) => {
      const rel = args.path.slice('@oclif/plugin-autocomplete/'.length);
      // the package's main is lib/index.js
      const pkgDir = path.resolve(path.dirname(require.resolve('@oclif/plugin-autocomplete', { paths: [ROOT] })), '..');
      return { path: path.join(pkgDir, `${rel}.js`) };
    });
  },
};

/**
 * Until the engine, the pool and the PostgreSQL locator call src/sea/ themselves,
 * the bundle routes their three lookups through it (a no-op once they do).
 */
const SEA_SEAMS = [
  { file: 'src/lua/engine.ts', uses: 'getWasmLocation', from: 'new LuaFactory()', to: "new LuaFactory(require('../sea/assets').getWasmLocation())" },
  {
    file: 'src/run/scenario-pool.ts',
    uses: 'getScenarioWorkerPath',
    from: "path.join(__dirname, 'scenario-worker.js')",
    to: "require('../sea/assets').getScenarioWorkerPath(path.join(__dirname, 'scenario-worker.js'))",
  },
  {
    file: 'src/backends/local/postgres-cluster.ts',
    uses: 'findPostgresBinaries',
    from: 'function binDir(): string {',
    to: "function binDir(): string {\n  return require('../../sea/postgres-binaries').findPostgresBinaries().binDir;",
  },
];
const seaSeams = {
  name: 'sea-seams',
  setup(build) {
    for (const seam of SEA_SEAMS) {
      const abs = path.join(ROOT, seam.file);
      build.onLoad({ filter: new RegExp(`^${abs.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }, (args) => {
        const text = fs.readFileSync(args.path, 'utf8');
        if (text.includes(seam.uses)) return { contents: text, loader: 'ts' };
        if (!text.includes(seam.from)) throw new Error(`${seam.file}: neither calls ${seam.uses} (src/sea) nor contains \`${seam.from}\``);
        if (!warned.has(seam.file)) console.warn(`build-binary: ${seam.file} does not call ${seam.uses} yet; bridged in the bundle`);
        warned.add(seam.file);
        return { contents: text.replace(seam.from, seam.to), loader: 'ts' };
      });
    }
  },
};
const warned = new Set();

/** wasmoon's emscripten glue does `await import('module')`, which a SEA main script cannot (no dynamic import there). */
const wasmoonNoDynamicImport = {
  name: 'wasmoon-no-dynamic-import',
  setup(build) {
    build.onLoad({ filter: /[\\/]wasmoon[\\/]dist[\\/]index\.js$/ }, (args) => {
      const text = fs.readFileSync(args.path, 'utf8');
      const from = "const {createRequire:a}=\n    await import('module');";
      if (!text.includes(from)) throw new Error(`wasmoon changed: ${args.path} has no \`${from}\``);
      return { contents: text.replace(from, "const {createRequire:a}=require('module');"), loader: 'js' };
    });
  },
};

async function bundle(entry, outfile, extra = {}) {
  const result = await esbuild.build({
    entryPoints: [path.join(ROOT, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    minify: true,
    keepNames: true,
    legalComments: 'none',
    external: EXTERNAL,
    banner: { js: BANNER },
    plugins: [deepImports, seaSeams, wasmoonNoDynamicImport],
    logLevel: 'error',
    ...extra,
    define: { 'import.meta.url': '__topas_import_meta_url', ...(extra.define ?? {}) },
  });
  return result;
}

function sha(...buffers) {
  const h = crypto.createHash('sha256');
  for (const b of buffers) h.update(b);
  return h.digest('hex').slice(0, 16);
}

async function main() {
  const t0 = Date.now();
  const out = outPath();
  fs.rmSync(WORK, { recursive: true, force: true });
  fs.mkdirSync(WORK, { recursive: true });
  const pjson = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

  const workerEntry = 'src/run/scenario-worker.ts';
  if (!fs.existsSync(path.join(ROOT, workerEntry))) throw new Error(`${workerEntry} is missing: scenarios could not run in the binary`);

  const mainJs = path.join(WORK, 'topas.js');
  const workerJs = path.join(WORK, 'scenario-worker.js');
  const oclifPjson = { name: pjson.name, version: pjson.version, description: pjson.description, oclif: pjson.oclif, dependencies: {} };
  await bundle('src/sea/entry.ts', mainJs, { define: { __TOPAS_PJSON__: JSON.stringify(oclifPjson) } });
  await bundle(workerEntry, workerJs, { define: { __TOPAS_PJSON__: JSON.stringify(oclifPjson) } });

  const wasmFile = require.resolve('wasmoon/dist/glue.wasm', { paths: [ROOT] });
  const typesDir = path.join(ROOT, 'lua-types');
  const luaTypes = {};
  for (const f of fs.readdirSync(typesDir).filter((n) => n.endsWith('.lua')).sort()) luaTypes[f] = fs.readFileSync(path.join(typesDir, f), 'utf8');
  const luaTypesJson = path.join(WORK, 'lua-types.json');
  fs.writeFileSync(luaTypesJson, JSON.stringify(luaTypes));

  const workerCode = fs.readFileSync(workerJs);
  const wasm = fs.readFileSync(wasmFile);
  const manifest = path.join(WORK, 'manifest.json');
  fs.writeFileSync(manifest, JSON.stringify({ version: pjson.version, buildId: `${pjson.version}-${sha(workerCode, wasm, fs.readFileSync(luaTypesJson))}` }));

  const blob = path.join(WORK, 'sea-prep.blob');
  const seaConfig = path.join(WORK, 'sea-config.json');
  fs.writeFileSync(
    seaConfig,
    JSON.stringify(
      {
        main: mainJs,
        output: blob,
        disableExperimentalSEAWarning: true,
        useCodeCache: true,
        // names shared with src/sea/assets.ts (SEA_ASSETS)
        assets: { 'manifest.json': manifest, 'glue.wasm': wasmFile, 'scenario-worker.js': workerJs, 'lua-types.json': luaTypesJson },
      },
      null,
      2,
    ),
  );
  execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: 'inherit' });

  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.rmSync(out, { force: true });
  fs.copyFileSync(fs.realpathSync(process.execPath), out);
  fs.chmodSync(out, 0o755);
  const postject = require.resolve('postject/dist/cli.js', { paths: [ROOT] });
  execFileSync(process.execPath, [postject, out, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SENTINEL_FUSE], { stdio: ['ignore', 'ignore', 'inherit'] });

  const mb = (n) => `${(n / 1024 / 1024).toFixed(1)} MB`;
  console.log(
    `built ${path.relative(process.cwd(), out)}: ${mb(fs.statSync(out).size)} (bundle ${mb(fs.statSync(mainJs).size)}, worker ${mb(workerCode.length)}, blob ${mb(fs.statSync(blob).size)}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
}

main().catch((err) => {
  console.error(`build-binary: ${err.stack || err}`);
  process.exit(1);
});
