// The published package as an application sees it: `npm pack` (which builds through `prepack`), the
// tarball unpacked into a consumer project outside the repo, then CommonJS and ES module
// applications run with `node`, and CommonJS and ES module TypeScript applications type-checked.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const repo = resolve(__dirname, '..')
const fixtures = join(__dirname, 'fixtures', 'packaging')
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { name: string, dependencies: Record<string, string> }

// Outside the repo, so that nothing resolves through the repo's own node_modules by accident.
const consumer = realpathSync(mkdtempSync(join(tmpdir(), 'fastify-mlflow-tracing-consumer-')))
t.teardown(() => rmSync(consumer, { recursive: true, force: true }))
const installed = join(consumer, 'node_modules', pkg.name)

// Consumers run with a bare environment: no MLFLOW_TRACKING_URI (so traces go to the file), no
// NODE_OPTIONS from the test runner.
const bareEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? consumer }

let packed: string[] = []

t.before(async () => {
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', consumer], { cwd: repo, maxBuffer: 16 * 1024 * 1024 })
  const [result] = JSON.parse(stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
  packed = result.files.map(f => f.path)
  mkdirSync(installed, { recursive: true })
  await run('tar', ['-xzf', join(consumer, result.filename), '-C', installed, '--strip-components=1'])
  // The package's dependencies (and Fastify and Node's types for the consumers) come from the repo:
  // installing them would need the network.
  for (const name of [...Object.keys(pkg.dependencies), 'fastify', 'express', '@types/express', '@types/node']) {
    const link = join(consumer, 'node_modules', name)
    mkdirSync(dirname(link), { recursive: true })
    symlinkSync(join(repo, 'node_modules', name), link, 'dir')
  }
  for (const file of readdirSync(fixtures)) copyFileSync(join(fixtures, file), join(consumer, file))
})

async function app (file: string, form: string): Promise<any> {
  const tracesFile = join(consumer, `traces-${file}-${form}.jsonl`)
  const { stdout } = await run(process.execPath, [file, form, tracesFile], { cwd: consumer, env: bareEnv, timeout: 30_000 })
  return JSON.parse(stdout.trim().split('\n').pop() as string)
}

/** What every consumer's POST /chat must have produced: one trace in the file, the handler's spans. */
function chatTraced (t: Test, seen: any): void {
  t.equal(seen.status, 200)
  t.same(seen.body, { answer: 'pong', traced: true }, 'request.mlflow is the live trace')
  t.equal(seen.lines, 1, 'one trace written to the JSON Lines file')
  t.match(seen.header, /^tr-[0-9a-f]{32}$/)
  t.equal(seen.traceId, seen.header, 'the file holds the trace the response names')
  t.same(seen.spans, [['POST /chat', 'AGENT'], ['chat fake-model', 'LLM']], 'per-route span type and the LLM span')
  t.same(seen.named, { MlflowTracing: 'function', findTraces: 'function', SpanType: 'AGENT' }, 'named exports')
}

t.test('the tarball holds the built entry points and their types, not the sources', async t => {
  for (const file of ['package.json', 'dist/plugin/index.js', 'dist/plugin/index.d.ts', 'dist/plugin/fastify/types.d.ts', 'esm/index.mjs', 'esm/index.d.mts',
    'dist/plugin/express/index.js', 'dist/plugin/express/index.d.ts', 'esm/express.mjs', 'esm/express.d.mts']) {
    t.ok(packed.includes(file), file)
  }
  t.same(packed.filter(f => f.startsWith('test/') || f.startsWith('plugin/') || f.startsWith('scripts/') || (f.endsWith('.ts') && !f.endsWith('.d.ts'))), [],
    'no tests, sources or scripts')
})

t.test('a CommonJS application requires it', async t => {
  for (const form of ['default', 'named', 'module']) {
    t.test(`and registers ${form === 'module' ? 'the module object itself' : `require(...).${form === 'named' ? 'fastifyMlflowTracing' : 'default'}`}`, async t => {
      const seen = await app('consumer.cjs', form)
      t.equal(seen.resolved, join(installed, 'dist', 'plugin', 'index.js'), 'the "require" condition')
      t.ok(seen.defaultIsPlugin, '.default and .fastifyMlflowTracing are the plugin')
      chatTraced(t, seen)
    })
  }
})

t.test('an ES module application imports it', async t => {
  for (const form of ['default', 'named']) {
    t.test(`with a ${form} import`, async t => {
      const seen = await app('consumer.mjs', form)
      t.equal(seen.resolved, pathToFileURL(join(installed, 'esm', 'index.mjs')).href, 'the "import" condition')
      t.ok(seen.defaultIsPlugin, 'the default export is the plugin function')
      t.ok(seen.sameAsRequire, 'import and require share one module instance')
      t.same(seen.missingNames, [], 'every CommonJS export is importable by name')
      chatTraced(t, seen)
    })
  }
})

t.test('an Express application requires "fastify-mlflow-tracing/express" and its requests are traced', async t => {
  const tracesFile = join(consumer, 'traces-express.jsonl')
  const { stdout } = await run(process.execPath, ['express-consumer.cjs', tracesFile], { cwd: consumer, env: bareEnv, timeout: 30_000 })
  const seen = JSON.parse(stdout.trim().split('\n').pop() as string)
  t.equal(seen.resolved, join(installed, 'dist', 'plugin', 'express', 'index.js'), 'the "./express" "require" condition')
  t.same(seen.body, { answer: 'pong', traced: true }, 'req.mlflow is the live trace')
  t.equal(seen.lines, 1, 'one trace written to the JSON Lines file')
  t.equal(seen.traceId, seen.header, 'the file holds the trace the response names')
  t.same(seen.spans, [['POST /chat', 'CHAIN'], ['chat fake-model', 'LLM']], 'the root renamed after the route, and the LLM span')
})

t.test('TypeScript applications type-check against the declarations, merged Fastify types included', async t => {
  const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc')
  const check = async (file: string): Promise<string[]> => {
    const args = [tsc, '--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022',
      '--types', 'node', '--listFiles', file]
    try {
      const { stdout } = await run(process.execPath, args, { cwd: consumer, env: bareEnv, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 })
      return stdout.trim().split('\n')
    } catch (err) {
      const e = err as { stdout?: string }
      throw new Error(`tsc ${file} failed:\n${(e.stdout ?? '').split('\n').filter(l => l.includes('error')).join('\n')}`)
    }
  }
  const entry = (files: string[]): string[] => files.filter(f => f.startsWith(installed + '/') && /\/(esm\/index\.d\.mts|dist\/plugin\/(index|fastify\/types)\.d\.ts)$/.test(f))
    .map(f => f.slice(installed.length + 1)).sort()

  // One tsc per file: each must find the merged types through its own entry point.
  const [cts, mts, expressMts] = await Promise.all([check('consumer.cts'), check('consumer.mts'), check('express-consumer.mts')])
  t.ok(expressMts.some(f => f === join(installed, 'esm', 'express.d.mts')), 'an Express ES module consumer compiles against the "./express" "import" types')
  t.same(entry(cts), ['dist/plugin/fastify/types.d.ts', 'dist/plugin/index.d.ts'], 'a CommonJS consumer (.cts) compiles against the "require" types')
  t.same(entry(mts), ['dist/plugin/fastify/types.d.ts', 'dist/plugin/index.d.ts', 'esm/index.d.mts'], 'an ES module consumer (.mts) compiles against the "import" types')
})
