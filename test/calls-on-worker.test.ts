// Calls move to the worker thread only under load (plugin/export/http.ts), which no other test
// makes: the fault tests and the real-server round trips again, every call on the worker.
import './helpers/calls-on-worker'
import './faults.test'
import './real-server.test'
