#!/usr/bin/env node
'use strict';
// Builds dist/topas: a single executable for this platform (Node SEA), offline.
//   1. esbuild bundles src/sea/entry.ts (the CLI, with a command table and the
//      oclif manifest made from dist/, and the workers for worker processes,
//      which are the binary itself: src/sea/worker-mode.ts) and each
//      worker-thread script (WORKERS) into CommonJS files with every package inlined;
//   2. the workers, wasmoon's glue.wasm and lua-types/ become SEA assets
//      (src/sea/assets.ts reads them back);
//   3. node --experimental-sea-config makes the blob (with V8 code cache), postject
//      injects it into a stripped copy of this node binary.
// Embedded PostgreSQL's native files stay outside (src/sea/postgres-binaries.ts finds them).
// Needs the compiled CLI in dist/ (`npm run build:binary` builds it first).
// Usage: node scripts/build-binary.js [--out dist/topas] [--no-strip]

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const esbuild = require('esbuild');

const ROOT = path.resolve(__dirname, '..');
const WORK = path.join(ROOT, 'dist', 'sea-build');
/** Worker-thread scripts, bundled each on its own and started from SEA assets (src/sea/assets.ts getWorkerPath). */
const WORKERS = ['src/run/scenario-worker.ts', 'src/load/load-worker.ts'];
const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

function outPath() {
  const i = process.argv.indexOf('--out');
  return path.resolve(ROOT, i > 0 ? process.argv[i + 1] : path.join('dist', 'topas'));
}

// Left to a runtime require (and allowed to fail there): native addons and optional peers;
// typescript is what @oclif/core reads tsconfig with in development only; terser is what
// postman-sandbox builds its boot bundle with, at development time only.
const EXTERNAL = ['*.node', 'terser', 'typescript', 'pg-native', 'cpu-features', 'bufferutil', 'utf-8-validate', 'ts-node', 'tsx', '@swc/core'];

// In the SEA main script `require` only loads builtins; packages left external (and any
// require of a path at run time) should resolve from where the file lies instead.
// ESM packages bundled into CommonJS read import.meta.url (fdir: createRequire(import.meta.url)).
const BANNER = "require = require('node:module').createRequire(__filename); var __topas_import_meta_url = require('node:url').pathToFileURL(__filename).href;";

/**
 * Until the Lua engine, the worker pool, the PostgreSQL locator and the local
 * backend's `node` command call src/sea/ themselves, the bundle routes those
 * lookups through it (each a no-op once its file does).
 */
const SEA_SEAMS = [
  { file: 'src/lua/lua-factory.ts', uses: 'getWasmLocation', from: 'new LuaFactory()', to: "new LuaFactory(require('../sea/assets').getWasmLocation())" },
  {
    file: 'src/backends/local/postgres-cluster.ts',
    uses: 'findPostgresBinaries',
    from: 'function binDir(): string {',
    to: "function binDir(): string {\n  return require('../../sea/postgres-binaries').findPostgresBinaries().binDir;",
  },
  {
    file: 'src/backends/local/local-driver.ts',
    uses: 'nodeExecutable',
    from: 'process.execPath',
    to: "require('../../sea/node-executable').nodeExecutable()",
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
        return { contents: text.split(seam.from).join(seam.to), loader: 'ts' };
      });
    }
  },
};
const warned = new Set();

/** Any `path.join(__dirname, '<name>-worker.js')` in src/ goes through getWorkerPath (unless the file calls it already). */
const workerPaths = {
  name: 'worker-paths',
  setup(build) {
    const srcDir = path.join(ROOT, 'src');
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      if (!args.path.startsWith(srcDir + path.sep) || args.path.startsWith(path.join(srcDir, 'sea') + path.sep)) return undefined;
      const text = fs.readFileSync(args.path, 'utf8');
      const re = /path\.join\(__dirname, '([\w-]+-worker\.js)'\)/g;
      if (!re.test(text) || /getWorkerPath/.test(text)) return undefined;
      let assets = path.relative(path.dirname(args.path), path.join(srcDir, 'sea', 'assets')).split(path.sep).join('/');
      if (!assets.startsWith('.')) assets = `./${assets}`;
      console.warn(`build-binary: ${path.relative(ROOT, args.path)} does not call getWorkerPath yet; bridged in the bundle`);
      return { contents: text.replace(re, (m) => `require('${assets}').getWorkerPath(${m})`), loader: 'ts' };
    });
  },
};

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

/**
 * The binary's command table, made from the compiled CLI (dist/): the oclif
 * manifest (so --help and --version load no command) and a module with one
 * lazy `require` per command. A command found at src/commands/<topic>/<verb>.ts
 * is required from there; anything else through src/commands/index.ts.
 * Plugin commands (oclif.plugins) are added from each plugin's own manifest.
 */
async function commandTable(pjson, bundled) {
  const { Plugin } = require(require.resolve('@oclif/core', { paths: [ROOT] }));
  const { COMMANDS } = require(path.join(ROOT, 'dist', 'src', 'commands', 'index.js'));
  const classes = {};
  const loaders = [];
  for (const [id, cls] of Object.entries(COMMANDS)) {
    const rel = id.split(':').join('/');
    const compiled = path.join(ROOT, 'dist', 'src', 'commands', `${rel}.js`);
    const source = path.join(ROOT, 'src', 'commands', `${rel}.ts`);
    const own = fs.existsSync(compiled) && fs.existsSync(source) && require(compiled).default === cls;
    classes[id] = cls;
    loaders.push([id, own ? `require(${JSON.stringify(source)}).default` : `require(${JSON.stringify(path.join(ROOT, 'src', 'commands', 'index.ts'))}).COMMANDS[${JSON.stringify(id)}]`]);
  }
  for (const name of pjson.oclif.plugins ?? []) {
    const pkgDir = findPackageDir(name);
    const manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, 'oclif.manifest.json'), 'utf8'));
    const stub = STUBBED_PLUGINS[name];
    for (const [id, c] of Object.entries(manifest.commands)) {
      if (stub) {
        // each id and alias answers with the stub's message (aliases become ids of their own)
        for (const alias of [id, ...(c.aliases ?? [])]) {
          classes[alias] = require(path.join(ROOT, 'dist', stub.replace(/\.ts$/, '.js'))).default;
          loaders.push([alias, `require(${JSON.stringify(path.join(ROOT, stub))}).default`]);
        }
        continue;
      }
      const file = path.join(pkgDir, ...c.relativePath);
      classes[id] = require(file).default;
      loaders.push([id, `require(${JSON.stringify(file)}).default`]);
    }
  }
  for (const [id, cls, expr] of bundled.commands) {
    classes[id] = cls;
    loaders.push([id, expr]);
  }
  const plugin = new Plugin({ isRoot: true, root: ROOT, ignoreManifest: true, pjson: { ...pjson, oclif: { ...pjson.oclif, plugins: [] } } });
  plugin.commandCache = classes;
  await plugin.load();
  const loadersJs = `'use strict';\nmodule.exports = {\n${loaders.map(([id, expr]) => `  ${JSON.stringify(id)}: () => ${expr},`).join('\n')}\n};\n`;
  return { manifest: plugin.manifest, loadersJs };
}

/**
 * Plugins of this repository built into the binary: their commands join the
 * command table and their `topas:backends` hooks run at start-up (the binary
 * loads no plugins from disk). Core never imports them: only this build and
 * the generated `topas-sea:bundled-plugins` module name them. The kubernetes
 * plugin is here so the runner image's binary can run `topas kube runner` and
 * do the SUT operations of scenarios inside a cluster.
 */
const BUNDLED_PLUGINS = [{ dir: 'plugins/kubernetes', commands: 'src/commands/index.ts', backends: 'src/hooks/backends.ts' }];

/** The bundled plugins' commands and topics, and the module that registers their backends. */
function bundledPlugins() {
  const commands = [];
  const topics = {};
  const hooks = [];
  for (const p of BUNDLED_PLUGINS) {
    const pkgDir = path.join(ROOT, p.dir);
    const pj = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
    Object.assign(topics, pj.oclif?.topics ?? {});
    const compiledIndex = path.join(ROOT, 'dist', p.dir, p.commands.replace(/\.ts$/, '.js'));
    const { COMMANDS } = require(compiledIndex);
    for (const [id, cls] of Object.entries(COMMANDS)) {
      const rel = path.join(path.dirname(p.commands), ...id.split(':'));
      const source = path.join(pkgDir, `${rel}.ts`);
      const compiled = path.join(ROOT, 'dist', p.dir, `${rel}.js`);
      const own = fs.existsSync(source) && fs.existsSync(compiled) && require(compiled).default === cls;
      commands.push([id, cls, own ? `require(${JSON.stringify(source)}).default` : `require(${JSON.stringify(path.join(pkgDir, p.commands))}).COMMANDS[${JSON.stringify(id)}]`]);
    }
    if (p.backends) hooks.push(path.join(pkgDir, p.backends));
  }
  const registerJs = `'use strict';\nmodule.exports = {\n  backendHooks: [\n${hooks.map((h) => `    () => require(${JSON.stringify(h)}).default,`).join('\n')}\n  ],\n};\n`;
  return { commands, topics, registerJs };
}

/**
 * Plugins whose commands cannot work in the binary: @oclif/plugin-plugins installs
 * with npm into a folder the binary never loads plugins from. Their command ids
 * are kept (so `topas plugins link` is not "command not found") and answer with a
 * clear message from this command class instead.
 */
const STUBBED_PLUGINS = { '@oclif/plugin-plugins': 'src/sea/plugins-unavailable.ts' };

/** A package's folder even when its "exports" hide package.json. */
function findPackageDir(name) {
  for (let dir = path.dirname(require.resolve(name, { paths: [ROOT] })); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, 'utf8')).name === name) return dir;
  }
  throw new Error(`cannot find the folder of ${name}`);
}

/** `require('topas-sea:command-loaders')` and `require('topas-sea:bundled-plugins')` in src/sea/entry.ts -> the generated modules. */
function generatedModules(files) {
  return {
    name: 'generated-modules',
    setup(build) {
      build.onResolve({ filter: /^topas-sea:[a-z-]+$/ }, (args) => {
        const file = files[args.path.slice('topas-sea:'.length)];
        if (!file) throw new Error(`no generated module ${args.path}`);
        return { path: file };
      });
    },
  };
}

async function bundle(entry, outfile, { define = {}, plugins = [] } = {}) {
  return esbuild.build({
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
    plugins: [seaSeams, workerPaths, wasmoonNoDynamicImport, ...plugins],
    logLevel: 'error',
    define: { 'import.meta.url': '__topas_import_meta_url', ...define },
  });
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

  if (!fs.existsSync(path.join(ROOT, WORKERS[0]))) throw new Error(`${WORKERS[0]} is missing: scenarios could not run in the binary`);
  const workerEntries = WORKERS.filter((w) => fs.existsSync(path.join(ROOT, w)));

  const mainJs = path.join(WORK, 'topas.js');
  const bundled = bundledPlugins();
  const oclifPjson = { name: pjson.name, version: pjson.version, description: pjson.description, oclif: { ...pjson.oclif, topics: { ...pjson.oclif.topics, ...bundled.topics } }, dependencies: {} };
  const table = await commandTable(oclifPjson, bundled);
  const loadersFile = path.join(WORK, 'command-loaders.js');
  fs.writeFileSync(loadersFile, table.loadersJs);
  const pluginsFile = path.join(WORK, 'bundled-plugins.js');
  fs.writeFileSync(pluginsFile, bundled.registerJs);
  await bundle('src/sea/entry.ts', mainJs, {
    define: { __TOPAS_PJSON__: JSON.stringify(oclifPjson), __TOPAS_MANIFEST__: JSON.stringify(table.manifest) },
    plugins: [generatedModules({ 'command-loaders': loadersFile, 'bundled-plugins': pluginsFile })],
  });
  const workerAssets = {};
  for (const entry of workerEntries) {
    const name = `${path.basename(entry, '.ts')}.js`;
    const file = path.join(WORK, 'workers', name);
    await bundle(entry, file);
    workerAssets[`workers/${name}`] = file;
  }

  const wasmFile = require.resolve('wasmoon/dist/glue.wasm', { paths: [ROOT] });
  const typesDir = path.join(ROOT, 'lua-types');
  const luaTypes = {};
  for (const f of fs.readdirSync(typesDir).filter((n) => n.endsWith('.lua')).sort()) luaTypes[f] = fs.readFileSync(path.join(typesDir, f), 'utf8');
  const luaTypesJson = path.join(WORK, 'lua-types.json');
  fs.writeFileSync(luaTypesJson, JSON.stringify(luaTypes));

  const workerCode = Buffer.concat(Object.values(workerAssets).map((f) => fs.readFileSync(f)));
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
        assets: { 'manifest.json': manifest, 'glue.wasm': wasmFile, 'lua-types.json': luaTypesJson, ...workerAssets },
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
  // Node's own debug symbols are ~13 MB of the binary; strip before injecting (never after)
  if (process.platform === 'linux' && !process.argv.includes('--no-strip')) {
    const stripped = spawnSync('strip', [out], { encoding: 'utf8' });
    if (stripped.error || stripped.status !== 0) console.warn(`build-binary: not stripped (${stripped.error?.message ?? stripped.stderr.trim()})`);
  }
  const postject = require.resolve('postject/dist/cli.js', { paths: [ROOT] });
  const injected = spawnSync(process.execPath, [postject, out, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SENTINEL_FUSE], { encoding: 'utf8' });
  // LIEF's "Can't find string offset for section name" warnings on Node's ELF are harmless
  const noise = /^warning: Can't find string offset for section name/;
  const stderr = injected.stderr.split('\n').filter((l) => l && !noise.test(l)).join('\n');
  if (injected.status !== 0) throw new Error(`postject failed (exit ${injected.status}):\n${stderr}`);
  if (stderr) console.error(stderr);

  const mb = (n) => `${(n / 1024 / 1024).toFixed(1)} MB`;
  console.log(
    `built ${path.relative(process.cwd(), out)}: ${mb(fs.statSync(out).size)} (bundle ${mb(fs.statSync(mainJs).size)}, workers ${mb(workerCode.length)}, blob ${mb(fs.statSync(blob).size)}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
}

main().catch((err) => {
  console.error(`build-binary: ${err.stack || err}`);
  process.exit(1);
});
