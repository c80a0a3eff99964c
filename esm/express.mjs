// The ESM entry of the Express middleware (package.json "exports" › "./express" › "import"): like
// esm/index.mjs, one CommonJS module re-exported, the middleware factory as the default export.
import cjs from '../dist/plugin/express/index.js'

export * from '../dist/plugin/express/index.js'
export default cjs.mlflowTracing
