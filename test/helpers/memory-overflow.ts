import type { OverflowReason, TraceOverflow } from '../../plugin/export/overflow'
import type { TraceRecord } from '../../plugin/trace/trace-record'

/** The queue's side of the spool contract, in memory: records every call for assertions. */
export class MemoryOverflow implements TraceOverflow {
  readonly puts: Array<{ id: string, reason: OverflowReason }> = []
  readonly settledIds: string[] = []
  readonly takes: number[] = []
  /** Set false to act as a full or unwritable spool. */
  accepting = true
  closed = false
  private readonly stored: TraceRecord[] = []
  readonly claimed = new Set<TraceRecord>()

  put (trace: TraceRecord, reason: OverflowReason): boolean {
    if (!this.accepting) return false
    this.puts.push({ id: trace.id, reason })
    this.stored.push(trace)
    return true
  }

  pending (): number {
    return this.stored.length + this.claimed.size
  }

  async take (max: number): Promise<TraceRecord[]> {
    this.takes.push(max)
    const taken = this.stored.splice(0, max)
    for (const trace of taken) this.claimed.add(trace)
    return taken
  }

  settled (trace: TraceRecord): void {
    if (!this.claimed.delete(trace)) throw new Error(`settled ${trace.id}, which was not taken`)
    this.settledIds.push(trace.id)
  }

  async close (): Promise<void> {
    this.closed = true
  }

  reasons (): Record<string, number> {
    const counts: Record<string, number> = {}
    for (const p of this.puts) counts[p.reason] = (counts[p.reason] ?? 0) + 1
    return counts
  }
}
