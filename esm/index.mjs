// The ESM entry (package.json "exports" › "." › "import"). The package itself is CommonJS
// (dist/plugin/index.js), and Node gives `import x from` of a CommonJS module its whole
// `module.exports`, i.e. { default, fastifyMlflowTracing, MlflowTracing, ... } rather than
// `exports.default`. Fastify (avvio) happens to unwrap `.default` at run time, but TypeScript types
// that default import as the namespace object, which `app.register()` rejects. So this file only
// re-exports the one CommonJS module (same instance for `import` and `require`: no dual-package
// state) with the plugin function as the default export.
import cjs from '../dist/plugin/index.js'

export * from '../dist/plugin/index.js'
export default cjs.fastifyMlflowTracing
