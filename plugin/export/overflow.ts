import type { TraceRecord } from '../trace/trace-record'

/** Why the export queue hands a trace over instead of sending it now. */
export type OverflowReason = 'destination_down' | 'queue_full' | 'shutdown'

/**
 * Where the export queue puts traces it cannot send now or keep in memory, and takes them back
 * from once the destination answers: the durable spool, which a later process may also drain.
 * The queue never waits on `put`; a trace that could not be kept is the queue's to count.
 */
export interface TraceOverflow {
  /** Keeps the trace; false when it could not (unwritable, full), and the caller counts the loss. */
  put: (trace: TraceRecord, reason: OverflowReason) => boolean
  /** Traces kept and not yet settled, as far as this process knows. */
  pending: () => number
  /** Up to `max` kept traces, claimed for this process until each is settled. */
  take: (max: number) => Promise<TraceRecord[]>
  /** A taken trace is done with: exported, or dropped for its own reason (counted by the queue). */
  settled: (trace: TraceRecord) => void
  /** Writes out what is buffered; what was taken and not settled stays for the next process. */
  close: () => Promise<void>
}
