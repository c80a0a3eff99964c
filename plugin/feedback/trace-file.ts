import { existsSync, readFileSync } from 'node:fs'
import type { AssessmentJson, StoredTraceInfo } from '../export/client'

/**
 * The lines of the embedded default's file besides traces (`{info, data}`): an assessment's state
 * as of that line (a later line of the same id wins), and a deletion.
 */
export type AssessmentLine = { assessment: AssessmentJson } | { deleted_assessment: { trace_id: string, assessment_id: string } }

/**
 * The traces of the embedded default's file in file order, each info with its live assessments, as
 * a tracking server would return them. A missing file holds no traces.
 */
export function readTracesFile (path: string): StoredTraceInfo[] {
  if (!existsSync(path)) return []
  const traces = new Map<string, StoredTraceInfo>()
  const assessments = new Map<string, AssessmentJson>()
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line === '') continue
    const doc = JSON.parse(line) as { info?: StoredTraceInfo } & Partial<Record<'assessment' | 'deleted_assessment', AssessmentJson>>
    if (doc.info !== undefined) traces.set(doc.info.trace_id, doc.info)
    else if (doc.assessment !== undefined) assessments.set(doc.assessment.assessment_id as string, doc.assessment)
    else if (doc.deleted_assessment !== undefined) assessments.delete(doc.deleted_assessment.assessment_id as string)
  }
  const byTrace = new Map<string, AssessmentJson[]>()
  for (const a of assessments.values()) {
    const list = byTrace.get(a.trace_id as string)
    if (list === undefined) byTrace.set(a.trace_id as string, [a])
    else list.push(a)
  }
  return [...traces.values()].map(info => ({ ...info, assessments: byTrace.get(info.trace_id) ?? [] }))
}
