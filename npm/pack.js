'use strict';
// Stages and packs nodeboot's npm packages: the launcher package and one
// package per platform holding that platform's binary. Used by `make npm`:
//   node npm/pack.js VERSION BIN_DIR OUT_DIR
// BIN_DIR holds <goos>-<goarch>/nodeboot (from `make release`); the
// tarballs land in OUT_DIR. Nothing is published.
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const [version, binDir, outDir] = process.argv.slice(2);
if (!version || !binDir || !outDir) {
  console.error('usage: node npm/pack.js VERSION BIN_DIR OUT_DIR');
  process.exit(2);
}
const root = path.resolve(__dirname, '..');
const { PLATFORMS } = require('./nodeboot/lib/platform.js');
const goNames = { x64: 'amd64', arm64: 'arm64' };

const stage = path.join(outDir, 'stage');
fs.rmSync(stage, { recursive: true, force: true });
fs.mkdirSync(stage, { recursive: true });

function pack(dir) {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', path.resolve(outDir)], { cwd: dir, encoding: 'utf8' });
  const name = JSON.parse(out)[0].filename;
  console.log('packed ' + path.join(outDir, name));
}

for (const [key, pkg] of Object.entries(PLATFORMS)) {
  const [os, cpu] = key.split('-');
  const bin = path.join(binDir, os + '-' + goNames[cpu], 'nodeboot');
  if (!fs.existsSync(bin)) {
    console.error('missing ' + bin + ': run `make release` first');
    process.exit(1);
  }
  const dir = path.join(stage, key);
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.copyFileSync(bin, path.join(dir, 'bin', 'nodeboot'));
  fs.chmodSync(path.join(dir, 'bin', 'nodeboot'), 0o755);
  fs.copyFileSync(path.join(root, 'LICENSE'), path.join(dir, 'LICENSE'));
  fs.writeFileSync(path.join(dir, 'README.md'), 'The nodeboot binary for ' + key + '. Install `nodeboot`, which picks this package on ' + key + '.\n');
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
    name: pkg,
    version,
    description: 'The nodeboot binary for ' + key,
    license: 'Apache-2.0',
    repository: { type: 'git', url: 'git+https://github.com/nodeboot/nodeboot.git' },
    os: [os],
    cpu: [cpu],
    files: ['bin/nodeboot'],
    preferUnplugged: true,
  }, null, 2) + '\n');
  pack(dir);
}

const main = path.join(stage, 'nodeboot');
fs.cpSync(path.join(__dirname, 'nodeboot'), main, { recursive: true });
fs.copyFileSync(path.join(root, 'LICENSE'), path.join(main, 'LICENSE'));
// nodeboot.json's schema, which `nodeboot init` points "$schema" at.
fs.copyFileSync(path.join(root, 'docs', 'nodeboot.schema.json'), path.join(main, 'nodeboot.schema.json'));
const pj = JSON.parse(fs.readFileSync(path.join(main, 'package.json'), 'utf8'));
pj.version = version;
for (const dep of Object.keys(pj.optionalDependencies)) pj.optionalDependencies[dep] = version;
fs.writeFileSync(path.join(main, 'package.json'), JSON.stringify(pj, null, 2) + '\n');
pack(main);
fs.rmSync(stage, { recursive: true, force: true });
