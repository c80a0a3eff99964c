// Types of esm/index.mjs: the CommonJS declarations (which carry the `declare module 'fastify'`
// merging for `request.mlflow`, route `config.mlflow` and `app.mlflowTracing`) with the plugin
// function, not the CommonJS namespace object, as the default export.
import { fastifyMlflowTracing } from '../dist/plugin/index.js'

export * from '../dist/plugin/index.js'
export default fastifyMlflowTracing
