// CPU accounting from /proc (Linux only; elsewhere the CPU columns stay empty), and waiting for
// other processes to go quiet before a measurement.
import { readdirSync, readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { num } from './settings'

/** Machine-wide jiffies: user + nice + system (processes), irq + softirq (loopback networking), steal, total. */
function machineJiffies (): { proc: number, irq: number, steal: number, total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    return { proc: f[0] + f[1] + f[2], irq: (f[5] ?? 0) + (f[6] ?? 0), steal: f[7] ?? 0, total: f.slice(0, 8).reduce((a, b) => a + (b ?? 0), 0) }
  } catch {
    return undefined
  }
}

function procStat (pid: string | number): { pgrp: number, jiffies: number, comm: string } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { pgrp: Number(f[2]), jiffies: Number(f[11]) + Number(f[12]), comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) }
}

/** Every process's jiffies and process group, by pid. */
function allProcesses (): Map<number, { pgrp: number, jiffies: number, comm: string }> {
  const out = new Map<number, { pgrp: number, jiffies: number, comm: string }>()
  try {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue
      try {
        out.set(Number(pid), procStat(pid))
      } catch {}
    }
  } catch {}
  return out
}

/** The process group of the MLflow server (spawned detached: its own group). */
let mlflowGroup: number | undefined

/** Finds the MLflow server's process group by its port, so that its CPU is counted apart; returns it, for the log. */
export function watchMlflowServer (port: string): number | undefined {
  mlflowGroup = findMlflowGroup(port)
  return mlflowGroup
}

function findMlflowGroup (port: string): number | undefined {
  for (const [pid, st] of allProcesses()) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      const i = cmd.indexOf('--port')
      if (cmd.includes('server') && i !== -1 && cmd[i + 1] === port) return st.pgrp
    } catch {}
  }
  return undefined
}

function commandLine (pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 80)
  } catch {
    return ''
  }
}

export interface CpuWindow {
  /** All in % of one core over the window (2 cores = 200 %). */
  serverPct: number
  /** The server's main thread alone: the one its requests queue for. */
  serverMainPct?: number
  loadgenPct: number
  /** The benchmark's MLflow tracking server (idle unless traces go to it). */
  mlflowPct: number
  /** Kernel interrupt work, mostly loopback TCP: grows with the request rate. */
  softirqPct: number
  stealPct: number
  /** Processes outside the benchmark (other engineers' tests …): high means the numbers are noisy. */
  otherPct: number
  /** The busiest of those processes. */
  otherTop: Array<{ pid: number, pct: number, cmd: string }>
}

/** Above this (% of one core), a measurement is flagged as disturbed by other processes. */
export const NOISY_PCT = 15

export function isNoisy (cpu: CpuWindow | undefined): boolean {
  return cpu !== undefined && cpu.otherPct > NOISY_PCT
}

function mainThreadJiffies (pid: number | undefined): number | undefined {
  try {
    return pid === undefined ? undefined : procStat(`${pid}/task/${pid}`).jiffies
  } catch {
    return undefined
  }
}

/** Starts a window; calling the result ends it. `serverPid`'s CPU is counted as the server's. */
export function cpuWindow (serverPid: number | undefined): () => CpuWindow | undefined {
  const m0 = machineJiffies()
  const p0 = allProcesses()
  const main0 = mainThreadJiffies(serverPid)
  const cores = cpus().length
  return () => {
    const m1 = machineJiffies()
    if (m0 === undefined || m1 === undefined) return undefined
    const p1 = allProcesses()
    const main1 = mainThreadJiffies(serverPid)
    const oneCore = (m1.total - m0.total) / cores
    const pct = (j: number): number => Math.round(1000 * j / oneCore) / 10
    let server = 0
    let loadgen = 0
    let flow = 0
    let other = 0
    const others: Array<{ pid: number, j: number }> = []
    for (const [pid, st] of p1) {
      const j = st.jiffies - (p0.get(pid)?.jiffies ?? 0) // new processes count from zero
      if (j <= 0) continue
      if (pid === serverPid) server += j
      else if (pid === process.pid) loadgen += j
      else if (mlflowGroup !== undefined && st.pgrp === mlflowGroup) flow += j
      else {
        other += j
        others.push({ pid, j })
      }
    }
    // Processes that exited during the window (short test runs) are in the machine total only.
    other += Math.max(0, (m1.proc - m0.proc) - (server + loadgen + flow + other))
    return {
      serverPct: pct(server),
      serverMainPct: main0 === undefined || main1 === undefined ? undefined : pct(main1 - main0),
      loadgenPct: pct(loadgen),
      mlflowPct: pct(flow),
      softirqPct: pct(m1.irq - m0.irq),
      stealPct: pct(m1.steal - m0.steal),
      otherPct: pct(other),
      otherTop: others.sort((a, b) => b.j - a.j).slice(0, 3).filter(o => pct(o.j) >= 2).map(o => ({ pid: o.pid, pct: pct(o.j), cmd: commandLine(o.pid) }))
    }
  }
}

/** Seconds the whole run may spend waiting for other processes to calm down (BENCH_QUIET_WAIT_SEC). */
let quietBudgetSec = num('BENCH_QUIET_WAIT_SEC', 90, true)

export function quietBudget (): number {
  return quietBudgetSec
}

/**
 * Waits (at most `maxSec`, and within the run's budget) until processes outside the benchmark use
 * less than NOISY_PCT of a core over one second. Returns the seconds waited.
 */
export async function waitForQuiet (maxSec: number): Promise<number> {
  const started = performance.now()
  for (;;) {
    const window = cpuWindow(undefined)
    await sleep(1000)
    const cpu = window()
    const waited = (performance.now() - started) / 1000
    if (cpu === undefined || cpu.otherPct < NOISY_PCT || waited >= Math.min(maxSec, quietBudgetSec)) {
      quietBudgetSec = Math.max(0, quietBudgetSec - Math.max(0, waited - 1))
      return Math.round(Math.max(0, waited - 1))
    }
  }
}
