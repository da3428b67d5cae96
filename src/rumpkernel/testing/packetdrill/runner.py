"""Run a parsed packetdrill script against a target (see target.py for the interface).

Interface:
    run_script(script, target) -> RunResult    -- raise ScriptFailure on the first mismatch
    run_file(path, target_factory=EngineTarget) -> RunResult
    ScriptFailure(name, line, message)         -- names the script line and shows expected
                                                  and actual segments in script terms

Semantics (docs/packetdrill.md has the whole story):
  * ``+T`` is relative to the previous line's start time, ``T`` absolute, ``*`` any time;
    ``A...B`` on a system call: it starts at A, blocks, and must return at B.
  * Inbound (``<``) sequence numbers are absolute (the script chooses the peer's ISN);
    their ACK numbers, SACK blocks and TS ecr are relative to the kernel's ISN and timestamp
    clock, learned from its latest SYN or SYN-ACK (and its first TS val).
  * Outbound (``>``) sequence numbers are relative to the kernel's ISN; ACK numbers, SACK blocks
    and TS ecr are absolute (the script's own numbers).  Each outbound line must match the next
    segment the kernel sends, within the timing tolerance (--tolerance_usecs, default 4000).
    A segment the script does not expect is a failure.
  * Omitted ``win``/``ack``/``urg`` on an outbound line are not checked; an omitted option list
    means "no options"; ``<...>`` means any options; ``TS val *`` ignores the value.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rumpkernel.net.wire.tcp import (
    NOP,
    SACK_PERMITTED,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpOptions,
    TcpSegment,
    Timestamps,
    WindowScale,
)
from rumpkernel.testing.packetdrill.parser import Event, PacketSpec, Script, parse_script

MASK = 0xFFFFFFFF
_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, ".": 0x10, "U": 0x20, "E": 0x40,
              "W": 0x80, "C": 0x80}
DEFAULT_TOLERANCE = 0.004
ANY_WAIT = 1000.0


class ScriptFailure(AssertionError):
    def __init__(self, name: str, line: int, message: str) -> None:
        super().__init__(f"{name}:{line}: {message}")
        self.line = line


@dataclass(slots=True)
class RunResult:
    name: str
    events: int
    end_time: float
    segments_in: int
    segments_out: int


def run_file(path: str | Path, target_factory=None) -> RunResult:
    from rumpkernel.testing.packetdrill.target import EngineTarget

    path = Path(path)
    script = parse_script(path.read_text(), path.name)
    return run_script(script, (target_factory or EngineTarget)())


def run_script(script: Script, target) -> RunResult:
    """Run ``script`` against ``target``; a target with ``enter(fn)`` (the kernel target) runs
    the whole script inside it (as a thread of its simulated world)."""
    runner = _Runner(script, target)
    enter = getattr(target, "enter", None)
    try:
        if enter is None:
            runner.run()
        else:
            enter(runner.run)
    finally:
        target.close()
    return RunResult(script.name, len(script.events), target.now, runner.n_in, runner.n_out)


class _Runner:
    def __init__(self, script: Script, target) -> None:
        self.script = script
        self.t = target
        tol = script.options.get("tolerance_usecs")
        self.tol = DEFAULT_TOLERANCE if tol is None else tol / 1e6
        self.iss: int | None = None
        self.ts_base: int | None = None
        self.unmatched: deque = deque()
        self.pending: dict[int, tuple[Event, float]] = {}
        self.n_in = self.n_out = 0
        self.line = 0

    def fail(self, message: str):
        raise ScriptFailure(self.script.name, self.line, message)

    def run(self) -> None:
        last = 0.0
        for ev in self.script.events:
            self.line = ev.line
            t = ev.time.start + (last if ev.time.start_rel else 0.0)
            if not ev.time.any and t + self.tol < last:
                self.fail(f"time {t:.3f} goes backwards (previous line at {last:.3f})")
            if ev.kind == "packet" and ev.packet.direction == ">":
                t_seen = self._expect(ev, t)
                last = t_seen if ev.time.any else t
                continue
            self._advance(t)
            if ev.kind == "packet":
                self._inject(ev.packet)
            elif ev.kind == "syscall":
                self._syscall(ev, t)
            else:
                self._command(ev.command)
            self._check_completions()
            last = t
        self._advance(last)
        if self.pending:  # calls still blocked: wait for the latest expected return
            self._advance(max(end for _, end in self.pending.values()) + self.tol)
        self._check_completions()
        if self.pending:
            ev = next(iter(self.pending.values()))[0]
            self.line = ev.line
            self.fail(f"{ev.syscall.name}() still blocked at the end of the script")

    # --- time and outbound segments ----------------------------------------------------------

    def _advance(self, t: float) -> None:
        if t > self.t.now:
            self.t.advance(t)
        self._gather()
        self._check_completions()
        if self.unmatched:
            when, seg = self.unmatched[0]
            self.fail(f"unexpected outbound segment at {when:.3f}: {self._show(seg)}")

    def _gather(self) -> None:
        for when, seg in self.t.collect():
            self.unmatched.append((when, seg))
            self.n_out += 1

    def _expect(self, ev: Event, t: float) -> float:
        spec = ev.packet
        if not self.unmatched:
            limit = self.t.now + ANY_WAIT if ev.time.any else t + self.tol
            self.t.advance(limit, stop_on_output=True)
            self._gather()
            self._check_completions()
        if not self.unmatched:
            self.fail(f"expected outbound segment at {t:.3f} was not sent: {ev.text}")
        when, seg = self.unmatched.popleft()
        if not ev.time.any and abs(when - t) > self.tol + 1e-9:
            self.fail(f"segment sent at {when:.6f}, expected at {t:.6f} "
                      f"(tolerance {self.tol * 1e6:.0f} us): {self._show(seg)}")
        self._learn(spec, seg)
        problem = self._mismatch(spec, seg)
        if problem:
            self.fail(f"{problem}\n  expected: {ev.text}\n  actual:   {self._show(seg)}")
        return when

    def _learn(self, spec: PacketSpec, seg: TcpSegment) -> None:
        if seg.flags & 0x02:  # every SYN or SYN-ACK (a new incarnation has a new ISN)
            self.iss = (seg.seq - spec.seq) & MASK
        if self.ts_base is None and seg.options.ts_val is not None and spec.options:
            for o in spec.options:
                if o.name == "TS" and o.values[0] is not None:
                    self.ts_base = (seg.options.ts_val - o.values[0]) & MASK

    def _mismatch(self, spec: PacketSpec, seg: TcpSegment) -> str | None:
        want = sum(_FLAG_BITS[c] for c in spec.flags)
        if seg.flags != want:
            return "flags differ"
        iss = self.iss or 0
        if (seg.seq - iss) & MASK != spec.seq & MASK:
            return "sequence number differs"
        if len(seg.payload) != spec.length:
            return "payload length differs"
        if spec.ack is not None and seg.ack != spec.ack & MASK:
            return "ack differs"
        if spec.win is not None and seg.window != spec.win:
            return "window differs"
        if spec.urg is not None and seg.urgent != spec.urg:
            return "urgent pointer differs"
        if spec.any_options:
            return None
        return self._options_mismatch(spec, seg.options)

    def _options_mismatch(self, spec: PacketSpec, opts: TcpOptions) -> str | None:
        want = [o for o in (spec.options or ()) if o.name != "eol"]
        items = list(opts.items)
        if len(want) != len(items):
            return "options differ"
        tol_ms = int(self.tol * 1000) + 1
        for o, it in zip(want, items):
            n, v = o.name, o.values
            if (n == "nop" and type(it) is Nop) or (n == "sackOK" and type(it) is SackPermitted):
                continue
            if n == "mss" and type(it) is Mss and v[0] in (None, it.value):
                continue
            if n == "wscale" and type(it) is WindowScale and v[0] in (None, it.shift):
                continue
            if n == "TS" and type(it) is Timestamps:
                val, ecr = v
                if val is not None:
                    diff = (it.val - (self.ts_base or 0) - val) & MASK
                    if min(diff, (-diff) & MASK) > tol_ms:
                        return f"TS val differs ({it.val - (self.ts_base or 0)})"
                if ecr is not None and it.ecr != ecr & MASK:
                    return "TS ecr differs"
                continue
            if n == "sack" and type(it) is Sack:
                if tuple((a & MASK, b & MASK) for a, b in v) != it.blocks:
                    return "SACK blocks differ"
                continue
            return "options differ"
        return None

    def _show(self, seg: TcpSegment) -> str:
        """Describe a kernel segment in script terms (relative seq, TS val)."""
        iss = self.iss or 0
        rel = TcpSegment(seg.src_port, seg.dst_port, (seg.seq - iss) & MASK, seg.ack,
                         seg.flags, seg.window, seg.urgent, self._rel_opts(seg.options),
                         seg.payload, seg.reserved)
        return rel.describe()

    def _rel_opts(self, opts: TcpOptions) -> TcpOptions:
        if self.ts_base is None or opts.ts_val is None:
            return opts
        return TcpOptions([Timestamps((o.val - self.ts_base) & MASK, o.ecr)
                           if type(o) is Timestamps else o for o in opts.items])

    # --- inbound segments --------------------------------------------------------------------

    def _inject(self, spec: PacketSpec) -> None:
        iss = self.iss or 0
        lport, rport = self.t.ports()
        flags = sum(_FLAG_BITS[c] for c in spec.flags)
        ack = 0
        if spec.ack is not None:
            ack = (spec.ack + iss) & MASK
        seg = TcpSegment(rport, lport, spec.seq & MASK, ack, flags,
                         0xFFFF if spec.win is None else spec.win,
                         spec.urg or 0, self._inbound_options(spec), bytes(spec.length))
        self.n_in += 1
        self.t.inject(seg)

    def _inbound_options(self, spec: PacketSpec) -> TcpOptions:
        if not spec.options:
            return TcpOptions(())
        iss = self.iss or 0
        items = []
        for o in spec.options:
            n, v = o.name, o.values
            if n == "eol":
                break
            if None in v:
                self.fail("wildcards are for outbound segments only")
            if n == "nop":
                items.append(NOP)
            elif n == "sackOK":
                items.append(SACK_PERMITTED)
            elif n == "mss":
                items.append(Mss(v[0]))
            elif n == "wscale":
                items.append(WindowScale(v[0]))
            elif n == "TS":
                ecr = v[1]
                if ecr and self.ts_base is not None:
                    ecr = (ecr + self.ts_base) & MASK
                items.append(Timestamps(v[0] & MASK, ecr & MASK))
            elif n == "sack":
                items.append(Sack(tuple(((a + iss) & MASK, (b + iss) & MASK) for a, b in v)))
        return TcpOptions(items)

    # --- system calls ------------------------------------------------------------------------

    def _syscall(self, ev: Event, t: float) -> None:
        spec = ev.syscall
        out = self.t.syscall(spec.name, spec.args)
        self._gather()
        if out.pending:
            if ev.time.end is None:
                self.fail(f"{spec.name}() blocked; give a time range (A...B) for blocking calls")
            end = ev.time.end + (t if ev.time.end_rel else 0.0)
            self.pending[out.handle] = (ev, end)
            return
        if ev.time.end is not None:
            end = ev.time.end + (t if ev.time.end_rel else 0.0)
            if abs(end - t) > self.tol:
                self.fail(f"{spec.name}() returned at once, expected to block until {end:.3f}")
        self._check_result(ev, out)

    def _check_completions(self) -> None:
        for when, handle, out in self.t.completions():
            ev, end = self.pending.pop(handle)
            saved, self.line = self.line, ev.line
            if abs(when - end) > self.tol + 1e-9:
                self.fail(f"{ev.syscall.name}() returned at {when:.6f}, expected at {end:.6f}")
            self._check_result(ev, out)
            self.line = saved

    def _check_result(self, ev: Event, out) -> None:
        spec = ev.syscall
        if spec.result is not None:
            if out.value != spec.result:
                got = f"{out.value}" + (f" {out.errno}" if out.errno else "")
                self.fail(f"{spec.name}() returned {got}, expected {spec.result}"
                          + (f" {spec.errno}" if spec.errno else ""))
            if spec.result == -1 and out.errno != spec.errno:
                self.fail(f"{spec.name}() failed with {out.errno}, expected {spec.errno}")
        if out.out is not None:
            self._check_out(spec, out.out)

    def _check_out(self, spec, actual) -> None:
        index = {"getsockopt": 3, "poll": 0, "ioctl": 2}.get(spec.name)
        if index is None or index >= len(spec.args):
            return
        expected = spec.args[index]
        problem = _compare(expected, actual)
        if problem:
            self.fail(f"{spec.name}(): {problem}")

    def _command(self, command: str) -> None:
        words = command.split()
        if len(words) >= 2 and words[0] == "sysctl":
            for w in words[1:]:
                if w.startswith("-"):
                    continue
                name, _, value = w.partition("=")
                try:
                    self.t.sysctl(name, value)
                except ValueError as e:
                    self.fail(str(e))
            return
        self.fail(f"unsupported command `{command}`")


def _compare(expected, actual, where: str = "") -> str | None:
    if expected is ...:
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) < len(expected):
            return f"{where or 'value'}: expected {expected!r}, got {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            p = _compare(e, a, f"{where}[{i}]")
            if p:
                return p
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected a struct, got {actual!r}"
        for k, e in expected.items():
            if k not in actual:
                return f"{where}.{k}: not reported"
            p = _compare(e, actual[k], f"{where}.{k}")
            if p:
                return p
        return None
    if hasattr(expected, "names"):  # A|B flags: compare as poll bits
        from rumpkernel.testing.packetdrill.target import POLL_BITS

        want = sum(POLL_BITS.get(n, 0) if isinstance(n, str) else n for n in expected.names)
        return None if want == actual else f"{where}: expected {expected.names}, got {actual!r}"
    if isinstance(expected, str) and isinstance(actual, int) and expected.startswith("POLL"):
        from rumpkernel.testing.packetdrill.target import POLL_BITS

        return None if POLL_BITS.get(expected) == actual else \
            f"{where}: expected {expected}, got {actual:#x}"
    if expected != actual:
        return f"{where or 'value'}: expected {expected!r}, got {actual!r}"
    return None
