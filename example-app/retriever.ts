/** A tiny in-memory knowledge base, so the example needs no vector store. */
const DOCUMENTS = [
  { id: 'mlflow', text: 'MLflow is an open source platform for the machine learning lifecycle, with tracing for GenAI apps.' },
  { id: 'fastify', text: 'Fastify is a fast, low overhead web framework for Node.js.' },
  { id: 'traces', text: 'A trace records one request: its spans, inputs, outputs, user and session.' },
  { id: 'databricks-apps', text: 'Databricks Apps run web apps inside a Databricks workspace behind an authenticating proxy.' }
]

export interface Document {
  id: string
  text: string
}

/** The documents sharing the most words with the query (at most `k`). */
export function retrieve (query: string, k = 2): Document[] {
  const words = new Set(query.toLowerCase().match(/[a-z]+/g) ?? [])
  return DOCUMENTS
    .map(doc => ({ doc, score: (doc.text.toLowerCase().match(/[a-z]+/g) ?? []).filter(w => words.has(w)).length }))
    .filter(x => x.score > 0)
    .sort((a, b) => b.score - a.score)
    .slice(0, k)
    .map(x => x.doc)
}
