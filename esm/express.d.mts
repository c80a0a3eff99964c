// Types of esm/express.mjs: the CommonJS declarations (with the global Express.Request merging for
// `req.mlflow`), the middleware factory as the default export.
import { mlflowTracing } from '../dist/plugin/express/index.js'

export * from '../dist/plugin/express/index.js'
export default mlflowTracing
