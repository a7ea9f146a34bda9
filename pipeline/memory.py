"""The peak memory of this process, as the run's log, its run result and the benchmarks
report it."""


def peak_rss_bytes() -> int:
  """This process's own peak resident set (VmHWM), counted from its exec.

  Not getrusage's ru_maxrss, in this process or from wait4 in its parent: Linux carries
  ru_maxrss over fork and exec, so a child started by a large parent (a benchmark that has
  scored a month, then starts the next run) reports at least the parent's resident set at
  the fork, whatever it used itself."""
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) * 1024
  raise RuntimeError('no VmHWM in /proc/self/status')


def peak_rss_gib() -> float:
  return peak_rss_bytes() / 2**30
