import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs'
import { readdir, readFile, rename, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { TraceRecord } from '../../trace/trace-record'
import { ThrottledWarnings, type Logger } from '../logger'
import type { OverflowReason, TraceOverflow } from '../overflow'
import { decodeTrace, encodeTrace } from './codec'
import { activeFile, claimedFile, countLines, newOwner, newSegmentBase, parseSegmentName, processAlive, readyFile, splitLines, type SegmentName } from './segments'

/** A segment is sealed past this size: replay claims, and eviction removes, one segment at a time. */
const SEGMENT_BYTES = 1024 * 1024
/** Each process touches its segments this often; one untouched for STALE_MS has lost its owner. */
const HEARTBEAT_MS = 10_000
/** Long enough that a busy event loop does not lose a live process its segments; a crash's are reclaimed within it. */
const STALE_MS = 60_000
/** After a failed write the spool rests this long before it tries the disk again (memory only meanwhile). */
const RETRY_MS = 30_000

export interface SpoolStats {
  /** The destination's directory in the spool. */
  dir: string
  /** Traces on disk and not yet exported, as far as this process knows. */
  pending: number
  /** Found on disk at start-up (left by an earlier process). */
  found: number
  /** Written to the spool by this process (a trace taken back and written again counts once). */
  spooled: number
  /** Taken back from the spool and settled (exported, or dropped for their own reason). */
  replayed: number
  /** Not taken: the directory was unwritable or full (the export queue counts what it then lost). */
  refused: number
  dropped: {
    /** Oldest segments removed past maxBytes, in traces. */
    evicted: number
    /** Lines cut short by a crash, or not readable as a trace. */
    torn: number
  }
}

interface Entry {
  record: TraceRecord
  line: string
  done: boolean
}

/** A segment this process has claimed: its traces go out, and the file goes once all are settled. */
interface Claim {
  base: string
  entries: Entry[]
  next: number
  remaining: number
  bytes: number
}

/**
 * The durable spool of one destination: traces the export queue cannot send now are appended, one
 * JSON line each, to segments in `dir` that this process alone writes. Writes are synchronous and
 * small, so that what `put` accepted is in the file (the page cache survives a crash of the process).
 * Segments are claimed for replay by renaming them; a crashed process's are taken over when its
 * pid is gone or its heartbeat stops. Past `maxBytes` the oldest segments are evicted, counted.
 */
export class DiskSpool implements TraceOverflow {
  private fd: number | undefined
  private activeBase = ''
  private activeBytes = 0
  private activeLines = 0
  private totalBytes = 0
  private disabledUntil = 0
  private closed = false
  private readonly owner = newOwner()
  private readonly segmentBytes: number
  /** Unclaimed segments this process knows of, by base: their traces count as pending. */
  private readonly known = new Map<string, number>()
  private readonly claims = new Map<string, Claim>()
  private readonly taken = new Map<TraceRecord, { claim: Claim, entry: Entry }>()
  private takeChain: Promise<unknown> = Promise.resolve()
  private readonly heartbeat: NodeJS.Timeout
  private readonly warnings: ThrottledWarnings
  readonly counts = { found: 0, spooled: 0, replayed: 0, refused: 0, evicted: 0, torn: 0 }

  /**
   * @param dir this destination's directory (created when first needed)
   * @param describe what the destination is, written next to the segments for whoever looks in
   */
  constructor (readonly dir: string, private readonly maxBytes: number, private readonly logger: Logger, private readonly describe: object = {}) {
    // Several segments within the bound: eviction removes one at a time.
    this.segmentBytes = Math.max(1, Math.min(SEGMENT_BYTES, Math.floor(maxBytes / 4)))
    this.warnings = new ThrottledWarnings(logger)
    this.heartbeat = setInterval(() => { void this.beat() }, HEARTBEAT_MS).unref()
  }

  /** Looks at what earlier processes left; returns how many traces were found. */
  async open (): Promise<number> {
    try {
      mkdirSync(this.dir, { recursive: true })
    } catch (err) {
      this.unwritable(err)
      return 0
    }
    await this.rescan()
    this.counts.found = this.pending()
    return this.counts.found
  }

  put (trace: TraceRecord, _reason: OverflowReason): boolean {
    if (this.closed || Date.now() < this.disabledUntil) {
      this.counts.refused++
      return false
    }
    // A trace taken from a claimed segment and handed back (shutdown mid-replay) leaves that segment.
    const from = this.taken.get(trace)
    if (from !== undefined) this.finish(trace, from.claim, from.entry)
    const line = Buffer.from((from?.entry.line ?? encodeTrace(trace)) + '\n')
    try {
      if (this.fd === undefined) this.openActive()
      let written = 0
      while (written < line.length) written += writeSync(this.fd as number, line, written)
    } catch (err) {
      this.unwritable(err)
      return false
    }
    // A trace that comes back (a failed probe, shutdown mid-replay) was counted when first spooled.
    if (from === undefined) this.counts.spooled++
    this.activeLines++
    this.activeBytes += line.length
    this.totalBytes += line.length
    if (this.activeBytes >= this.segmentBytes) this.seal()
    if (this.totalBytes > this.maxBytes) this.evict()
    return true
  }

  pending (): number {
    let n = this.activeLines
    for (const lines of this.known.values()) n += lines
    for (const claim of this.claims.values()) n += claim.remaining
    return n
  }

  /** Oldest first: claimed segments of this process, sealed ones, those of dead processes, then its own open one. */
  async take (max: number): Promise<TraceRecord[]> {
    const taking = this.takeChain.then(async () => await this.takeNow(max))
    this.takeChain = taking.catch(() => {})
    return await taking
  }

  settled (trace: TraceRecord): void {
    const from = this.taken.get(trace)
    if (from === undefined) return
    this.counts.replayed++
    this.finish(trace, from.claim, from.entry)
  }

  /** Seals the open segment; what is claimed and not settled goes back to the directory, settled traces left out. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.heartbeat)
    await this.takeChain
    if (this.fd !== undefined) this.seal()
    for (const claim of this.claims.values()) this.giveBack(claim)
    this.claims.clear()
    this.taken.clear()
  }

  stats (): SpoolStats {
    const { found, spooled, replayed, refused, evicted, torn } = this.counts
    return { dir: this.dir, pending: this.pending(), found, spooled, replayed, refused, dropped: { evicted, torn } }
  }

  private async takeNow (max: number): Promise<TraceRecord[]> {
    const out: TraceRecord[] = []
    while (!this.closed) {
      for (const claim of this.claims.values()) {
        while (out.length < max && claim.next < claim.entries.length) {
          const entry = claim.entries[claim.next++]
          this.taken.set(entry.record, { claim, entry })
          out.push(entry.record)
        }
      }
      if (out.length >= max || !(await this.claimNext())) break
    }
    return out
  }

  private async claimNext (): Promise<boolean> {
    let names: SegmentName[]
    try {
      names = await this.segments()
    } catch {
      return false
    }
    for (const name of names) {
      if ((name.state === 'ready' || await this.isStale(name)) && await this.claim(name)) return true
    }
    // Last, the segment this process is writing: it goes out while the next one fills.
    if (this.fd === undefined || this.activeLines === 0) return false
    const base = this.activeBase
    this.closeActive()
    return await this.claim({ file: activeFile(base), base, state: 'active', owner: this.owner })
  }

  /** Renames the segment to this process's claim and reads it; false if another process was first, or it held nothing. */
  private async claim (name: SegmentName): Promise<boolean> {
    const file = join(this.dir, claimedFile(name.base, this.owner))
    try {
      await rename(join(this.dir, name.file), file)
    } catch {
      this.known.delete(name.base)
      return false
    }
    this.known.delete(name.base)
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch {
      return false
    }
    const { lines, torn } = splitLines(text)
    const entries: Entry[] = []
    let unreadable = torn
    for (const line of lines) {
      try {
        entries.push({ record: decodeTrace(line), line, done: false })
      } catch {
        unreadable++
      }
    }
    if (unreadable > 0) {
      this.counts.torn += unreadable
      this.warnings.warn('torn', () => ({ segment: file, torn: this.counts.torn }), 'MLflow trace spool: unreadable lines skipped (a crash mid-write)')
    }
    const claim: Claim = { base: name.base, entries, next: 0, remaining: entries.length, bytes: Buffer.byteLength(text) }
    if (entries.length === 0) {
      this.remove(claim)
      return false
    }
    this.claims.set(name.base, claim)
    return true
  }

  private finish (trace: TraceRecord, claim: Claim, entry: Entry): void {
    this.taken.delete(trace)
    if (entry.done) return
    entry.done = true
    if (--claim.remaining === 0 && claim.next === claim.entries.length) this.remove(claim)
  }

  private remove (claim: Claim): void {
    this.claims.delete(claim.base)
    try {
      unlinkSync(join(this.dir, claimedFile(claim.base, this.owner)))
    } catch {}
    this.totalBytes = Math.max(0, this.totalBytes - claim.bytes)
  }

  /** Back to `ready` for whoever replays next; rewritten without the settled traces if there were any. */
  private giveBack (claim: Claim): void {
    const file = join(this.dir, claimedFile(claim.base, this.owner))
    try {
      if (claim.remaining < claim.entries.length) {
        const rest = claim.entries.filter(e => !e.done).map(e => e.line + '\n').join('')
        // Same age, so it is replayed (and evicted) in its turn; written aside, then renamed in.
        const base = newSegmentBase(this.owner, Number(claim.base.slice(0, 13)))
        writeFileSync(join(this.dir, activeFile(base)), rest)
        renameSync(join(this.dir, activeFile(base)), join(this.dir, readyFile(base)))
        unlinkSync(file)
      } else {
        renameSync(file, join(this.dir, readyFile(claim.base)))
      }
    } catch (err) {
      // Left claimed: the next process takes it over once this one is gone.
      this.logger.warn({ segment: file, err: (err as Error).message }, 'MLflow trace spool: a claimed segment could not be handed back')
    }
  }

  private openActive (): void {
    mkdirSync(this.dir, { recursive: true })
    this.activeBase = newSegmentBase(this.owner)
    this.fd = openSync(join(this.dir, activeFile(this.activeBase)), 'ax')
    this.activeBytes = 0
    this.activeLines = 0
    try {
      writeFileSync(join(this.dir, 'destination.json'), JSON.stringify(this.describe) + '\n', { flag: 'wx' })
    } catch {}
  }

  private closeActive (): void {
    if (this.fd === undefined) return
    try {
      closeSync(this.fd)
    } catch {}
    this.fd = undefined
    this.activeBytes = 0
    this.activeLines = 0
  }

  private seal (): void {
    const base = this.activeBase
    const lines = this.activeLines
    this.closeActive()
    try {
      renameSync(join(this.dir, activeFile(base)), join(this.dir, readyFile(base)))
      this.known.set(base, lines)
    } catch {}
  }

  /** Removes the oldest segments nobody is replaying until the spool is within maxBytes. */
  private evict (): void {
    let names: SegmentName[]
    try {
      names = segmentsByAge(readdirSync(this.dir))
    } catch {
      return
    }
    for (const name of names) {
      if (this.totalBytes <= this.maxBytes) break
      if (!this.evictable(name)) continue
      const path = join(this.dir, name.file)
      try {
        // A segment's lines are known once it was sealed or scanned: read it only when they are not.
        const lines = this.known.get(name.base) ?? countLines(readFileSync(path, 'utf8'))
        const { size } = statSync(path)
        unlinkSync(path)
        this.totalBytes -= size
        this.counts.evicted += lines
        this.known.delete(name.base)
      } catch {}
    }
    this.warnings.warn('evicted', () => ({ dir: this.dir, maxBytes: this.maxBytes, evicted: this.counts.evicted }),
      'MLflow trace spool full: oldest traces evicted')
  }

  /** Not a segment this spool writes or replays, nor one another live spool does. */
  private evictable (name: SegmentName): boolean {
    return name.state === 'ready' || (!this.isMine(name) && !this.ownerAlive(name))
  }

  private isMine (name: SegmentName): boolean {
    if (name.owner.token !== this.owner.token || name.owner.pid !== this.owner.pid) return false
    return name.state === 'active' ? name.base === this.activeBase && this.fd !== undefined : this.claims.has(name.base)
  }

  /** Gone when its pid runs no more; under a pid that runs, when its heartbeat stopped (the pid may be another process's now). */
  private ownerAlive (name: SegmentName, mtimeMs?: number): boolean {
    if (name.owner.pid === this.owner.pid && name.owner.token === this.owner.token) return false
    if (!processAlive(name.owner.pid)) return false
    return mtimeMs === undefined || Date.now() - mtimeMs <= STALE_MS
  }

  /** Whether a segment that is not `ready` has lost its owner, so that this process may take it over. */
  private async isStale (name: SegmentName): Promise<boolean> {
    if (name.state === 'ready' || this.isMine(name)) return false
    if (!this.ownerAlive(name)) return true
    try {
      return !this.ownerAlive(name, (await stat(join(this.dir, name.file))).mtimeMs)
    } catch {
      return false
    }
  }

  private async segments (): Promise<SegmentName[]> {
    return segmentsByAge(await readdir(this.dir))
  }

  /** Learns of segments others left (sealed or stale) and the directory's size. */
  private async rescan (): Promise<void> {
    let names: SegmentName[]
    try {
      names = await this.segments()
    } catch {
      return
    }
    let total = 0
    const seen = new Set<string>()
    for (const name of names) {
      seen.add(name.base)
      try {
        // Counted already (this process sealed it, or read it before): only its size may be new.
        if (this.claims.has(name.base) || this.known.has(name.base) || (name.base === this.activeBase && this.fd !== undefined)) {
          total += (await stat(join(this.dir, name.file))).size
          continue
        }
        if (name.state !== 'ready' && !(await this.isStale(name))) continue
        const text = await readFile(join(this.dir, name.file), 'utf8')
        total += Buffer.byteLength(text)
        this.known.set(name.base, countLines(text))
      } catch {}
    }
    for (const base of this.known.keys()) if (!seen.has(base)) this.known.delete(base)
    this.totalBytes = total
  }

  /** Keeps this process's segments fresh (so none is taken over) and the picture of the directory current. */
  private async beat (): Promise<void> {
    const now = new Date()
    const mine = [...this.claims.keys()].map(base => claimedFile(base, this.owner))
    if (this.fd !== undefined) mine.push(activeFile(this.activeBase))
    for (const file of mine) {
      try {
        utimesSync(join(this.dir, file), now, now)
      } catch {}
    }
    await this.rescan()
  }

  private unwritable (err: unknown): void {
    this.counts.refused++
    this.closeActive()
    this.disabledUntil = Date.now() + RETRY_MS
    this.warnings.warn('unwritable', () => ({ dir: this.dir, err: (err as Error).message, refused: this.counts.refused }),
      'MLflow trace spool directory not writable: traces stay in memory only')
  }
}

/** The spool's segments among a directory's file names, oldest first. */
function segmentsByAge (files: string[]): SegmentName[] {
  return files.map(parseSegmentName).filter((n): n is SegmentName => n !== undefined).sort(byAge)
}

function byAge (a: SegmentName, b: SegmentName): number {
  return a.base < b.base ? -1 : a.base > b.base ? 1 : 0
}
