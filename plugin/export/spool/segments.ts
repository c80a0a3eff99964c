import { randomBytes } from 'node:crypto'

/**
 * A segment's file name says who has it: `<ms>-<owner>-<seq>.active` while its writer appends,
 * `.ready` once sealed, `.claimed-<owner>` while a process replays it. An owner is a pid and a
 * random token per spool, since a restarted container may run its new process under the old pid.
 * Every change of hands is a rename, which is atomic: of two processes claiming one segment, one
 * gets ENOENT. The leading time sorts segments oldest first, for replay and for eviction.
 */
export interface SegmentName {
  file: string
  base: string
  state: 'active' | 'ready' | 'claimed'
  /** The writer for `active` and `ready`, the claimer for `claimed`. */
  owner: Owner
}

export interface Owner {
  pid: number
  token: string
}

const NAME = /^(\d{13}-(\d+)_([0-9a-f]{8})-\d+)\.(active|ready|claimed-(\d+)_([0-9a-f]{8}))$/

export function parseSegmentName (file: string): SegmentName | undefined {
  const m = NAME.exec(file)
  if (m === null) return undefined
  const state = m[4] === 'active' ? 'active' : m[4] === 'ready' ? 'ready' : 'claimed'
  const owner = state === 'claimed' ? { pid: Number(m[5]), token: m[6] } : { pid: Number(m[2]), token: m[3] }
  return { file, base: m[1], state, owner }
}

export function newOwner (): Owner {
  return { pid: process.pid, token: randomBytes(4).toString('hex') }
}

const ownerText = (owner: Owner): string => `${owner.pid}_${owner.token}`

let seq = 0

/** A new segment base; `ms` keeps a rewritten segment's age. */
export function newSegmentBase (owner: Owner, ms = Date.now()): string {
  return `${String(ms).padStart(13, '0')}-${ownerText(owner)}-${seq++}`
}

export const activeFile = (base: string): string => `${base}.active`
export const readyFile = (base: string): string => `${base}.ready`
export const claimedFile = (base: string, owner: Owner): string => `${base}.claimed-${ownerText(owner)}`

/** Whether a process with this pid runs (EPERM: it does, as another user). */
export function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A segment's lines: the traces' JSON texts, and how many lines were torn (a crash mid-write). */
export function splitLines (text: string): { lines: string[], torn: number } {
  const lines = text.split('\n')
  // A complete file ends with a newline: the last element is then empty, else a torn write.
  const last = lines.pop() as string
  return { lines: lines.filter(l => l !== ''), torn: last === '' ? 0 : 1 }
}

/** Lines in a segment's text, as counted without parsing. */
export function countLines (text: string): number {
  let n = 0
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++
  return n
}
