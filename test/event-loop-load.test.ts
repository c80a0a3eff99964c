import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { EventLoopLoad } from '../plugin/export/event-loop-load'

function spin (ms: number): void {
  const end = performance.now() + ms
  while (performance.now() < end) { /* a busy request thread */ }
}

t.test('busy after a quarter second of work, idle again after a quarter second of rest', async t => {
  const load = new EventLoopLoad()
  t.equal(load.isBusy(), false, 'a new meter starts idle')
  spin(300)
  t.equal(load.isBusy(), true)
  spin(50)
  t.equal(load.isBusy(), true, 'between samples the last answer stands')
  await sleep(300)
  t.equal(load.isBusy(), false)
})
