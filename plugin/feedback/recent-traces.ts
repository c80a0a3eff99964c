/** How many ended trace ids are remembered; past it the oldest are forgotten. */
const CAPACITY = 10_000

/**
 * Ids of traces this process ended, newest last. Feedback often comes right after its request,
 * before the trace is exported: an id found here is waited for rather than answered "not found".
 * Exported ones are not removed (that would cost the export path); a lookup finds them stored.
 */
export class RecentTraces {
  private readonly ids = new Set<string>()

  add (id: string): void {
    this.ids.add(id)
    // A Set iterates in insertion order: the first is the oldest.
    if (this.ids.size > CAPACITY) this.ids.delete(this.ids.values().next().value as string)
  }

  has (id: string): boolean {
    return this.ids.has(id)
  }
}
