import { randomUUID } from 'node:crypto'
import { mkdir, appendFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { AssessmentJson } from '../export/client'
import { TraceMetadata } from '../trace/constants'
import type { FeedbackStore, FeedbackTarget } from './store'
import { readTracesFile, type AssessmentLine } from './trace-file'

/**
 * Assessments in the embedded default's JSON Lines file, next to the traces FileSink appends:
 * append-only, so a line is never rewritten under a reader. Each lookup reads the whole file, which
 * suits the development default it is, not production volumes.
 */
export class FileFeedbackStore implements FeedbackStore {
  constructor (readonly path: string) {}

  async target (traceId: string): Promise<FeedbackTarget | undefined> {
    const info = readTracesFile(this.path).find(t => t.trace_id === traceId)
    if (info === undefined) return undefined
    return { user: info.trace_metadata[TraceMetadata.USER], assessments: info.assessments ?? [] }
  }

  async create (traceId: string, assessment: AssessmentJson): Promise<AssessmentJson> {
    const now = new Date().toISOString()
    // MLflow's own id form.
    const stored = { ...assessment, assessment_id: 'a-' + randomUUID().replace(/-/g, ''), trace_id: traceId, create_time: now, last_update_time: now, valid: true }
    await this.append({ assessment: stored })
    return stored
  }

  async update (traceId: string, assessmentId: string, assessment: AssessmentJson): Promise<AssessmentJson> {
    const old = (await this.target(traceId))?.assessments.find(a => a.assessment_id === assessmentId)
    // Metadata merges into the old, as the tracking server does it.
    const metadata = { ...old?.metadata, ...assessment.metadata }
    const stored = { ...assessment, metadata, assessment_id: assessmentId, trace_id: traceId, create_time: old?.create_time, last_update_time: new Date().toISOString(), valid: true }
    await this.append({ assessment: stored })
    return stored
  }

  async remove (traceId: string, assessmentId: string): Promise<void> {
    await this.append({ deleted_assessment: { trace_id: traceId, assessment_id: assessmentId } })
  }

  private async append (line: AssessmentLine): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true })
    // One write with O_APPEND: it lands whole after FileSink's lines, never inside one.
    await appendFile(this.path, JSON.stringify(line) + '\n')
  }
}
