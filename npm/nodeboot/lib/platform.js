'use strict';
// Which platform package holds the nodeboot binary for this machine. The
// nodeboot package lists every platform package as an optional dependency;
// each declares its own os and cpu, so npm installs only the one that fits
// (the pattern esbuild uses). Plain JS with no dependencies: it runs before
// anything else could be installed.

// process.platform-process.arch → package. Keep in step with
// RELEASE_PLATFORMS in the Makefile and npm/pack.js.
const PLATFORMS = {
  'linux-x64': '@nodeboot/linux-x64',
  'linux-arm64': '@nodeboot/linux-arm64',
  'darwin-arm64': '@nodeboot/darwin-arm64',
  'darwin-x64': '@nodeboot/darwin-x64',
};

// binaryPath returns the path of the nodeboot binary for platform/arch, or
// throws an Error saying what is wrong and what to do. resolve is
// require.resolve (tests pass their own); env may name a binary outright.
function binaryPath(platform, arch, resolve, env) {
  if (env && env.NODEBOOT_BINARY) {
    return env.NODEBOOT_BINARY;
  }
  const key = platform + '-' + arch;
  const pkg = PLATFORMS[key];
  if (!pkg) {
    throw new Error(
      'nodeboot has no binary for ' + key + '; it ships for ' +
        Object.keys(PLATFORMS).join(', ') +
        '. On another platform, build it from source with Go (go install github.com/nodeboot/nodeboot/cmd/nodeboot@latest) and set NODEBOOT_BINARY to its path.',
    );
  }
  try {
    return resolve(pkg + '/bin/nodeboot');
  } catch (e) {
    throw new Error(
      'the package ' + pkg + ' (nodeboot\'s binary for ' + key + ') is not installed. ' +
        'npm leaves optional dependencies out with --omit=optional, --no-optional or a lockfile made on another platform: ' +
        'run `npm install` again without those (or `npm install ' + pkg + '`).',
    );
  }
}

module.exports = { PLATFORMS, binaryPath };
