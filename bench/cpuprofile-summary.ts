// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function + url, and the plugin's share.
//   node dist/bench/cpuprofile-summary.js <file.cpuprofile | dir> [top=25] [requests served, for µs per request]
// Self time comes from the sample time deltas. "Inclusive" plugin time counts every sample whose
// stack has a frame from the plugin (dist/plugin/), so builtins the plugin calls (JSON.stringify,
// Buffer.byteLength, AsyncLocalStorage.run …) are charged to it; GC samples have no stack and are
// charged to no one.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'

interface CallFrame { functionName: string, url: string, lineNumber: number, columnNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

const repoRoot = resolve(__dirname, '..', '..')

function pickFile (arg: string): string {
  if (!statSync(arg).isDirectory()) return arg
  const files = readdirSync(arg).filter(f => f.endsWith('.cpuprofile')).map(f => join(arg, f))
  if (files.length === 0) throw new Error(`no .cpuprofile in ${arg}`)
  return files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]
}

function shortUrl (url: string): string {
  if (url === '') return ''
  const path = url.startsWith('file://') ? new URL(url).pathname : url
  if (!path.startsWith('/')) return path
  const rel = relative(repoRoot, path)
  return rel.startsWith('..') ? path : rel
}

type Category = 'plugin' | 'fastify' | 'opentelemetry' | 'node_modules' | 'node internals' | 'bench' | 'gc' | 'idle' | 'program' | 'native/builtin'

function category (frame: CallFrame): Category {
  const url = frame.url
  if (frame.functionName === '(garbage collector)') return 'gc'
  if (frame.functionName === '(idle)') return 'idle'
  if (frame.functionName === '(program)') return 'program'
  if (url.includes('/dist/plugin/')) return 'plugin'
  if (url.includes('/node_modules/fastify/') || url.includes('/node_modules/@fastify/') || url.includes('/node_modules/find-my-way/') ||
      url.includes('/node_modules/light-my-request/') || url.includes('/node_modules/fast-json-stringify/') || url.includes('/node_modules/avvio/')) return 'fastify'
  if (url.includes('/node_modules/@opentelemetry/')) return 'opentelemetry'
  if (url.includes('/node_modules/')) return 'node_modules'
  if (url.startsWith('node:') || url.startsWith('internal/')) return 'node internals'
  if (url.includes('/dist/bench/')) return 'bench'
  return 'native/builtin'
}

function main (): void {
  const file = pickFile(process.argv[2] ?? '/tmp/prof')
  const top = Number(process.argv[3] ?? 25)
  const requests = process.argv[4] === undefined ? undefined : Number(process.argv[4])
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const n of profile.nodes) byId.set(n.id, n)
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)

  const selfUs = new Map<number, number>()
  let totalUs = 0
  // timeDeltas[i] is the gap before sample i; charge it to sample i (as Chrome DevTools does).
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = Math.max(0, profile.timeDeltas[i] ?? 0)
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt)
    totalUs += dt
  }

  // Self time by function + url + line.
  const byFunction = new Map<string, { name: string, url: string, line: number, cat: Category, us: number }>()
  const byCategory = new Map<Category, number>()
  for (const [id, us] of selfUs) {
    const f = (byId.get(id) as ProfileNode).callFrame
    const key = `${f.functionName}\u0000${f.url}\u0000${f.lineNumber}`
    const entry = byFunction.get(key) ?? { name: f.functionName === '' ? '(anonymous)' : f.functionName, url: shortUrl(f.url), line: f.lineNumber + 1, cat: category(f), us: 0 }
    entry.us += us
    byFunction.set(key, entry)
    byCategory.set(entry.cat, (byCategory.get(entry.cat) ?? 0) + us)
  }

  // Attributed: a sample belongs to the nearest frame on its stack that is the plugin's, Fastify's,
  // the bench's or another package's; builtins, node internals and @opentelemetry (which the plugin
  // calls for context) pass through to their caller. So JSON.stringify inside serializeTrace counts
  // for the plugin, while Fastify code that runs inside a hook's done() (a continuation, not work
  // of the hook) stays Fastify's. "On stack" is the naive upper bound: any plugin frame anywhere.
  const passThrough = new Set<Category>(['native/builtin', 'node internals', 'opentelemetry'])
  let pluginAttributedUs = 0
  let pluginOnStackUs = 0
  const attributedByPluginFn = new Map<string, number>()
  const attributedByCategory = new Map<Category, number>()
  const pluginBuiltins = new Map<string, number>()
  const frameKey = (f: CallFrame): string => `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}:${f.lineNumber + 1}`
  for (const [id, us] of selfUs) {
    let owner: CallFrame | undefined
    let onStack = false
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const f = (byId.get(n) as ProfileNode).callFrame
      const cat = category(f)
      if (owner === undefined && !passThrough.has(cat) && f.functionName !== '(root)') owner = f
      if (cat === 'plugin') onStack = true
    }
    const leaf = (byId.get(id) as ProfileNode).callFrame
    const ownerCat: Category = owner === undefined ? category(leaf) : category(owner)
    attributedByCategory.set(ownerCat, (attributedByCategory.get(ownerCat) ?? 0) + us)
    if (onStack) pluginOnStackUs += us
    if (owner !== undefined && ownerCat === 'plugin') {
      pluginAttributedUs += us
      const key = frameKey(owner)
      attributedByPluginFn.set(key, (attributedByPluginFn.get(key) ?? 0) + us)
      if (category(leaf) !== 'plugin') {
        const b = `${leaf.functionName || '(anonymous)'}${leaf.url === '' ? '' : ` (${shortUrl(leaf.url)}:${leaf.lineNumber + 1})`} ← ${key}`
        pluginBuiltins.set(b, (pluginBuiltins.get(b) ?? 0) + us)
      }
    }
  }

  const idleUs = byCategory.get('idle') ?? 0
  const busyUs = totalUs - idleUs
  const ms = (us: number): string => (us / 1000).toFixed(1).padStart(9) +
    (requests === undefined ? '' : ` ${(us / requests).toFixed(2).padStart(6)} µs/req`)
  const pct = (us: number, of = busyUs): string => (100 * us / of).toFixed(1).padStart(5) + '%'

  console.log(`${file}: ${(totalUs / 1e6).toFixed(2)} s sampled, ${profile.samples.length} samples, busy (non-idle) ${(busyUs / 1e6).toFixed(2)} s`)
  console.log('percentages are of busy time' + (requests === undefined ? '' : `; ${requests} requests: ${(busyUs / requests).toFixed(2)} µs busy per request`) + '\n')
  console.log(`top ${top} functions by self time:`)
  console.log(`${'self ms'.padStart(9)} ${'%'.padStart(6)}  ${'category'.padEnd(15)} function  (url:line)`)
  const sorted = [...byFunction.values()].sort((a, b) => b.us - a.us)
  for (const e of sorted.slice(0, top)) {
    console.log(`${ms(e.us)} ${pct(e.us)}  ${e.cat.padEnd(15)} ${e.name}  ${e.url === '' ? '' : `(${e.url}:${e.line})`}`)
  }

  console.log('\nself time by category:')
  for (const [cat, us] of [...byCategory].sort((a, b) => b[1] - a[1])) {
    if (cat === 'idle') continue
    console.log(`${ms(us)} ${pct(us)}  ${cat}`)
  }

  const pluginSelf = byCategory.get('plugin') ?? 0
  console.log('\nattributed time by category (builtins, node internals and OTel charged to their caller):')
  for (const [cat, us] of [...attributedByCategory].sort((a, b) => b[1] - a[1])) {
    if (cat === 'idle') continue
    console.log(`${ms(us)} ${pct(us)}  ${cat}`)
  }
  console.log(`\nplugin (dist/plugin/): self ${(pluginSelf / 1000).toFixed(1)} ms = ${pct(pluginSelf).trim()} of busy; ` +
    `attributed ${(pluginAttributedUs / 1000).toFixed(1)} ms = ${pct(pluginAttributedUs).trim()}; ` +
    `upper bound (a plugin frame anywhere on the stack, continuations included) ${(pluginOnStackUs / 1000).toFixed(1)} ms = ${pct(pluginOnStackUs).trim()}`)
  console.log(`\ntop ${top} plugin functions by self time:`)
  for (const e of sorted.filter(e => e.cat === 'plugin').slice(0, top)) {
    console.log(`${ms(e.us)} ${pct(e.us)}  ${e.name}  (${e.url}:${e.line})`)
  }
  console.log('\nplugin functions by attributed time (their own code + builtins they call, top 15):')
  for (const [key, us] of [...attributedByPluginFn].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(`${ms(us)} ${pct(us)}  ${key}`)
  }
  console.log('\nbuiltins / node internals / OTel charged to the plugin (leaf ← plugin caller, top 15):')
  for (const [key, us] of [...pluginBuiltins].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(`${ms(us)} ${pct(us)}  ${key}`)
  }
}

main()
