import { runCallsOn } from '../../plugin/export/http'

// Imported first by calls-on-worker.test.ts, before the test files it runs again.
runCallsOn('worker')
