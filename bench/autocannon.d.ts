// The part of autocannon's programmatic API the benchmark uses (autocannon ships no types).
declare module 'autocannon' {
  function autocannon (opts: autocannon.Options): Promise<autocannon.Result> & { stop: () => void }
  namespace autocannon {
    interface Options {
      url: string
      connections?: number
      pipelining?: number
      duration?: number
      overallRate?: number
      timeout?: number
    }
    interface Histogram {
      average: number
      mean: number
      stddev: number
      min: number
      max: number
      p50: number
      p90: number
      p97_5: number
      p99: number
      total: number
    }
    interface Result {
      duration: number
      errors: number
      timeouts: number
      non2xx: number
      resets: number
      '2xx': number
      latency: Histogram
      requests: Histogram & { sent: number }
      throughput: Histogram
    }
  }
  export = autocannon
}
