#!/usr/bin/env python3
"""lotrace overhead benchmark: one command, results written to bench/results.md.

Runs lobench ping-pong and streaming on every transport under: no tracer;
lotrace (each backend this kernel allows, default settings); and a peer tracer,
bpftrace, keeping per-process byte counts and a latency histogram on the same
tracepoints. Runs are interleaved (modes rotate every round) because machines
are noisy; each figure is the median over rounds, compared with the baseline
measured in the same run. Also measures lotrace's own CPU and memory, the
highest message rate it sustains without losing events (and what happens
above it), its user-side aggregation speed (tools/aggbench), and the floor:
what the tracepoint backend's hooks cost with programs that do nothing
(bench/hookfloor).

Usage (root, from the repository root): `make bench`, or after
`make lotrace tools/lobench tools/aggbench bench/hookfloor`:
    bench/overhead.py [--rounds 5] [--quick] [--out bench/results.md]
"""
import argparse
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOTRACE = os.path.join(ROOT, "lotrace")
LOBENCH = os.path.join(ROOT, "tools", "lobench")
HOOKFLOOR = os.path.join(ROOT, "bench", "hookfloor")
AGGBENCH = os.path.join(ROOT, "tools", "aggbench")
TRANSPORTS = ["unix_stream", "tcp", "udp", "unix_dgram", "unix_seqpacket"]

# The peer: comparable per-message work on the same tracepoints (per-process
# byte and message counts, a send-latency histogram keyed by thread).
BPFTRACE_SCRIPT = r"""
tracepoint:raw_syscalls:sys_enter /args->id == 44 || args->id == 46 || args->id == 1/ { @start[tid] = nsecs; }
tracepoint:sock:sock_send_length /@start[tid]/ { @send_ns = hist(nsecs - @start[tid]); delete(@start[tid]); }
tracepoint:sock:sock_send_length /args->ret > 0/ { @sent_bytes[pid, comm] = sum(args->ret); @sent_msgs[pid] = count(); }
tracepoint:sock:sock_recv_length /args->ret > 0/ { @recv_bytes[pid, comm] = sum(args->ret); @recv_msgs[pid] = count(); }
"""


def run_json(args):
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def lobench(transport, pattern, size, quick, extra=()):
    args = [LOBENCH, "-t", transport, "-p", pattern, "-s", str(size), "--json",
            "--cpu-client", "0", "--cpu-server", "0"]
    if pattern == "pingpong":
        args += ["-n", "3000" if quick else "20000", "-w", "500"]
    else:
        args += ["-d", "0.3" if quick else "1"]
    return run_json(args + list(extra))


class Tracer:
    """A tracer process started for one mode and stopped with SIGINT."""

    def __init__(self, mode):
        self.mode = mode
        self.proc = None
        self.output = ""

    def start(self):
        if self.mode == "none":
            return
        if self.mode == "bpftrace":
            self.proc = subprocess.Popen(["bpftrace", "-e", BPFTRACE_SCRIPT], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
            ready = "Attaching"
        elif self.mode.startswith("hooks:"):
            self.proc = subprocess.Popen([HOOKFLOOR, "attach", self.mode.split(":", 1)[1]],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            ready = "hookfloor: attached"
        else:
            backend = self.mode.split(":", 1)[1]
            self.proc = subprocess.Popen([LOTRACE, "stat", "--json", "--backend", backend],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            ready = "lotrace: tracing with"
        stream = self.proc.stdout if self.mode == "bpftrace" else self.proc.stderr
        deadline = time.time() + 60
        for line in stream:
            if ready in line:
                break
            if time.time() > deadline:
                raise RuntimeError(f"{self.mode} did not start")
        time.sleep(0.3)  # let the last probes settle

    def map_memory(self):
        """Bytes of BPF map memory of lotrace's programs (bpftool memlock)."""
        if not self.mode.startswith("lotrace"):
            return 0
        progs = json.loads(subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True,
                                          text=True).stdout or "[]")
        ids = {m for p in progs if p.get("name", "").startswith("lt_") for m in p.get("map_ids", [])}
        total = 0
        for map_id in ids:
            m = json.loads(subprocess.run(["bpftool", "map", "show", "id", str(map_id), "-j"],
                                          capture_output=True, text=True).stdout or "{}")
            total += m.get("bytes_memlock", 0)
        return total

    def stop(self):
        """Returns (cpu seconds, peak RSS bytes, lotrace JSON or None)."""
        if not self.proc:
            return 0.0, 0, None
        self.proc.send_signal(signal.SIGINT)
        out = self.proc.stdout.read()
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        doc = None
        if self.mode.startswith("lotrace"):
            try:
                doc = json.loads(out)
            except json.JSONDecodeError:
                sys.exit(f"lotrace printed no JSON: {self.proc.stderr.read()}")
        return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, doc


def workloads(quick):
    wl = []
    for t in TRANSPORTS:
        for size in (64, 16384):
            if t == "udp" and size > 1400:
                continue
            wl.append((t, "pingpong", size))
        for size in (1, 65536):
            if t in ("udp", "unix_dgram") and size > 1400:
                continue
            wl.append((t, "stream", size))
    if quick:
        wl = [w for w in wl if w[0] in ("unix_stream", "tcp")]
    return wl


def working_backends():
    found = []
    for b in ("fentry", "tracepoint", "kprobe"):
        r = subprocess.run([LOTRACE, "stat", "-q", "--json", "-d", "0.1", "--backend", b],
                           capture_output=True, text=True)
        if r.returncode == 0:
            found.append(b)
    return found


def interleaved(modes, rounds, label):
    """Modes in the order run: each round starts one mode later than the last."""
    for r in range(rounds):
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
            print(f"{label} {r + 1}/{rounds}: {mode}", file=sys.stderr)
            yield mode


def counted_messages(doc, pids, direction):
    """unix_dgram messages lotrace counted for pids in one direction."""
    return sum(p["messages"] for p in doc["processes"]
               if p["pid"] in pids and p["transport"] == "unix_dgram" and p["direction"] == direction)


def max_rate(quick):
    """Stream unix_dgram 16 B at the machine's limit, 1 then 2 pairs: lost events and exactness."""
    rows = []
    for pairs in (1, 2):
        t = Tracer("lotrace:auto")
        t.start()
        bench = run_json([LOBENCH, "-t", "unix_dgram", "-p", "stream", "-s", "16", "-P", str(pairs),
                          "-d", "1" if quick else "3", "--json"])
        cpu, rss, doc = t.stop()
        sent = bench["clients_total"]["sent_messages"]
        counted = counted_messages(doc, bench["clients"], "send")
        received = counted_messages(doc, bench["servers"], "recv")
        rows.append({"pairs": pairs, "msgs_per_s": bench["messages_per_s"], "sent": sent,
                     "counted_sent": counted, "counted_recv": received,
                     "lost_events": doc["lost_events"], "events": doc["events_processed"],
                     "untimed": doc["untimed_messages"], "lotrace_cpu_s": cpu,
                     "elapsed_s": bench["elapsed_s"]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer workloads, shorter runs (a smoke test)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("overhead.py: run as root (tracers load BPF programs)")
    for exe in (LOTRACE, LOBENCH, AGGBENCH, HOOKFLOOR):
        if not os.access(exe, os.X_OK):
            sys.exit(f"overhead.py: {exe} missing: run "
                     "`make lotrace tools/lobench tools/aggbench bench/hookfloor`")

    backends = working_backends()
    modes = ["none"] + [f"lotrace:{b}" for b in backends] + ["bpftrace"]
    wl = workloads(args.quick)
    results = {m: {w: [] for w in wl} for m in modes}
    cost = {m: [] for m in modes}
    for mode in interleaved(modes, args.rounds, "round"):
        t = Tracer(mode)
        t.start()
        started = time.time()
        for w in wl:
            results[mode][w].append(lobench(*w, args.quick))
        mem = t.map_memory()
        cpu, rss, doc = t.stop()
        cost[mode].append({"cpu_s": cpu, "wall_s": time.time() - started, "rss": rss, "maps": mem,
                           "lost": doc["lost_events"] if doc else 0,
                           "events": doc["events_processed"] if doc else 0})

    agg = run_json([AGGBENCH, "20000000", "200"])
    rates = max_rate(args.quick)
    floor = hook_floor(2 * args.rounds, backends, args.quick)
    write_report(args, modes, wl, results, cost, agg, rates, floor)


# What the tracepoint backend's hooks cost with programs that do (almost) nothing.
FLOOR_SETS = ["empty-sock", "empty-all", "count-all"]


def hook_floor(rounds, backends, quick):
    """Per mode: write+read ns (hookfloor loop) and the 64 B unix_stream ping-pong, interleaved."""
    modes = ["none"] + [f"hooks:{s}" for s in FLOOR_SETS] + [f"lotrace:{b}" for b in backends] + \
        ["bpftrace"]
    out = {m: {"loop": [], "syscall": [], "pingpong": []} for m in modes}
    for mode in interleaved(modes, rounds, "floor round"):
        t = Tracer(mode)
        t.start()
        calls = run_json([HOOKFLOOR, "loop"])
        out[mode]["loop"].append(calls["write_read_ns"])
        out[mode]["syscall"].append(calls["syscall_ns"])
        out[mode]["pingpong"].append(lobench("unix_stream", "pingpong", 64, quick)["one_way_ns"]["p50"])
        t.stop()
    return out


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def write_report(args, modes, wl, results, cost, agg, rates, floor):
    lines = []
    cmd = "bench/overhead.py" + (f" --rounds {args.rounds}" if args.rounds != 5 else "") + \
          (" --quick" if args.quick else "")
    cpu = re.sub(r"\s+", " ", next((l.split(":", 1)[1] for l in open("/proc/cpuinfo")
                                     if l.startswith("model name")), "?")).strip()
    lines += ["# lotrace overhead", "",
              f"- command: `{cmd}` (as root)",
              f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
              f"- machine: {os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}",
              f"- rounds: {args.rounds}, modes interleaved; figures are medians over rounds",
              "- client and server pinned to CPU 0 (same core), as in the issue's reference numbers",
              "- latency: one-way = RTT/2 p50 from lobench's user-space clock; throughput: messages/s",
              "- bpftrace peer: per-process sent/received bytes and messages, and a send-latency "
              "histogram, on the same sock tracepoints (lighter work than lotrace: no per-message "
              "latency across processes, no pairs)", ""]
    tracers = [m for m in modes if m != "none"]
    lines += ["## Latency (ping-pong, one-way p50)", "",
              "| transport | size | baseline | " + " | ".join(f"{m} added" for m in tracers) + " |",
              "|---|---|---|" + "---|" * len(tracers)]
    for w in wl:
        if w[1] != "pingpong":
            continue
        base = med([x["one_way_ns"]["p50"] for x in results["none"][w]])
        cells = []
        for m in tracers:
            v = med([x["one_way_ns"]["p50"] for x in results[m][w]])
            cells.append(f"+{v - base:.0f} ns ({(v / base - 1) * 100:+.1f} %)")
        lines.append(f"| {w[0]} | {w[2]} B | {base / 1000:.2f} us | " + " | ".join(cells) + " |")
    lines += ["", "## Throughput (streaming, one sender one receiver)", "",
              "| transport | size | baseline msgs/s | " + " | ".join(f"{m} lost" for m in tracers) + " |",
              "|---|---|---|" + "---|" * len(tracers)]
    for w in wl:
        if w[1] != "stream":
            continue
        base = med([x["messages_per_s"] for x in results["none"][w]])
        cells = []
        for m in tracers:
            v = med([x["messages_per_s"] for x in results[m][w]])
            cells.append(f"{(1 - v / base) * 100:.1f} %")
        lines.append(f"| {w[0]} | {w[2]} B | {base:,.0f} | " + " | ".join(cells) + " |")
    lines += ["", "## The tracer's own cost during the runs above", "",
              "| mode | CPU (user+sys) | CPU % of wall | peak RSS | BPF map memory | events | lost events |",
              "|---|---|---|---|---|---|---|"]
    for m in tracers:
        c = cost[m]
        lines.append(f"| {m} | {med([x['cpu_s'] for x in c]):.2f} s | "
                     f"{med([x['cpu_s'] / x['wall_s'] * 100 for x in c]):.1f} % | "
                     f"{med([x['rss'] for x in c]) / 2**20:.1f} MiB | "
                     f"{med([x['maps'] for x in c]) / 2**20:.1f} MiB | "
                     f"{med([x['events'] for x in c]):,.0f} | {max(x['lost'] for x in c)} |")
    lines += ["", "## Highest rate (unix_dgram 16 B streaming, lotrace --backend auto)", "",
              "| pairs | msgs/s | sent (lobench) | counted sent | counted received | events | lost events | untimed | lotrace CPU |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rates:
        lines.append(f"| {r['pairs']} | {r['msgs_per_s']:,.0f} | {r['sent']:,} | {r['counted_sent']:,} | "
                     f"{r['counted_recv']:,} | {r['events']:,} | {r['lost_events']:,} | {r['untimed']:,} | "
                     f"{r['lotrace_cpu_s'] / r['elapsed_s'] * 100:.0f} % |")
    # Call costs: the minimum over rounds (noise only ever adds); ping-pong: the median.
    base_loop, base_sys = min(floor["none"]["loop"]), min(floor["none"]["syscall"])
    base_pp = med(floor["none"]["pingpong"])
    lines += ["", "## The floor: what the hooks cost before any work (bench/hookfloor)", "",
              "The tracepoint backend needs three hooks: raw `sys_enter` (where a send starts), "
              "`sock:sock_send_length` and `sock:sock_recv_length`. `hooks:*` attach programs that do "
              "nothing (`empty-*`) or only count messages and bytes per process (`count-all`). "
              "`write+read` is one 64 B write and one read on a Unix socketpair, the two calls of one "
              "ping-pong leg without the scheduler's noise; `any syscall` is one getppid(), which every "
              "system call on the host pays while a `sys_enter` program is attached. Both are on CPU 0, "
              "best of 7 runs, then the minimum over "
              f"{len(floor['none']['loop'])} interleaved rounds; the ping-pong is the median over them. "
              "Percentages are of the untraced ping-pong's one-way latency.", "",
              "| mode | write+read | added | any syscall | added | 64 B unix_stream one-way p50 | added |",
              "|---|---|---|---|---|---|---|"]
    for m, v in floor.items():
        loop, sys_ns, pp = min(v["loop"]), min(v["syscall"]), med(v["pingpong"])
        if m == "none":
            added = sys_added = pp_added = "-"
        else:
            added = f"{loop - base_loop:+.0f} ns ({(loop - base_loop) / base_pp * 100:+.1f} %)"
            sys_added = f"{sys_ns - base_sys:+.0f} ns"
            pp_added = f"{pp - base_pp:+.0f} ns ({(pp / base_pp - 1) * 100:+.1f} %)"
        lines.append(f"| {m} | {loop:.0f} ns | {added} | {sys_ns:.0f} ns | {sys_added} | "
                     f"{pp / 1000:.2f} us | {pp_added} |")
    lines += ["", "## User-side aggregation (tools/aggbench, one core)", "",
              f"{agg['events_per_s']:,.0f} events/s ({agg['ns_per_event']:.1f} ns/event, "
              f"{agg['processes']} processes, {agg['events']:,} events)", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
