"""The script runner itself: syntax errors name their line, and every kind of mismatch fails
(a runner that cannot fail would make the script suite worthless)."""

from __future__ import annotations

import pytest

from rumpkernel.testing.packetdrill import (
    EngineTarget,
    ScriptError,
    ScriptFailure,
    parse_script,
    run_script,
)

GOOD = """\
0.000 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>
+.1 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
+0 write(4, ..., 100) = 100
+0 > P. 1:101(100) ack 1
+.1 < . 1:1(0) ack 101 win 257
"""


def run(text: str, target=EngineTarget):
    return run_script(parse_script(text, "t.pkt"), target())


def test_good_script_runs() -> None:
    r = run(GOOD)
    assert r.events == 10 and r.segments_in == 3 and r.segments_out == 2
    assert abs(r.end_time - 0.2) < 1e-9


@pytest.mark.parametrize("old,new,line,words", [
    ("+0 > S. 0:0(0) ack 1 <mss 1460", "+0 > S 0:0(0) ack 1 <mss 1460", 5, "flags"),
    ("+0 > P. 1:101(100) ack 1", "+0 > P. 2:102(100) ack 1", 9, "sequence"),
    ("> S. 0:0(0) ack 1", "> S. 0:0(0) ack 2", 5, "ack differs"),
    ("<mss 1460,nop,nop,sackOK,nop,wscale 7>", "<mss 1400,nop,nop,sackOK,nop,wscale 7>", 5,
     "options"),
    ("<mss 1460,nop,nop,sackOK,nop,wscale 7>", "<mss 1460,nop,nop,sackOK,nop,wscale 6>", 5,
     "options"),
    ("<mss 1460,nop,nop,sackOK,nop,wscale 7>", "", 5, "options"),
    ("+0 > P. 1:101(100) ack 1", "+0 > P. 1:101(100) ack 1 win 5", 9, "window"),
    ("+0 > P. 1:101(100) ack 1", "+0 > P. 1:100(99) ack 1", 9, "length"),
    ("+0 > P. 1:101(100) ack 1", "+.01 > P. 1:101(100) ack 1", 9, "sent at"),
    ("+0 > P. 1:101(100) ack 1\n", "", 9, "unexpected outbound"),
    ("+0 write(4, ..., 100) = 100\n", "", 8, "was not sent"),
    ("+0 accept(3, ..., ...) = 4", "+0 accept(3, ..., ...) = 5", 7, "returned 4"),
    ("+0 listen(3, 1) = 0", "+0 listen(3, 1) = -1 EINVAL", 3, "returned 0"),
    ("+0 write(4, ..., 100) = 100", "+0 read(4, ..., 100) = 100", 8, "blocked"),
    ("+0 write(4, ..., 100) = 100\n+0 > P. 1:101(100) ack 1\n+.1 < . 1:1(0) ack 101 win 257\n",
     "+0...0.3 read(4, ..., 100) = 100\n", 8, "still blocked"),
    ("+0 accept(3, ..., ...) = 4",
     "+0 accept(3, ..., ...) = 4\n+0 getsockopt(4, SOL_TCP, TCP_INFO, {tcpi_state=TCP_CLOSE}, "
     "[104]) = 0", 8, "tcpi_state"),
])
def test_mismatches_fail_on_their_line(old: str, new: str, line: int, words: str) -> None:
    assert old in GOOD
    with pytest.raises(ScriptFailure) as e:
        run(GOOD.replace(old, new, 1))
    assert e.value.line == line, str(e.value)
    assert words in str(e.value)


@pytest.mark.parametrize("old,new,line,words", [
    ("+0 > P. 1:101(100) ack 1", "+0 > P. 1:100(99) ack 1", 9, "length"),
    ("+0 > P. 1:101(100) ack 1\n", "", 9, "unexpected outbound"),
    ("+0 accept(3, ..., ...) = 4", "+0 accept(3, ..., ...) = 5", 7, "returned 4"),
    ("+0 write(4, ..., 100) = 100", "+0 read(4, ..., 100) = 100", 8, "blocked"),
])
def test_kernel_target_mismatches_fail(old: str, new: str, line: int, words: str) -> None:
    from rumpkernel.testing.packetdrill.kernel_target import KernelTarget

    assert run(GOOD, KernelTarget).segments_out == 2
    with pytest.raises(ScriptFailure) as e:
        run(GOOD.replace(old, new, 1), KernelTarget)
    assert e.value.line == line, str(e.value)
    assert words in str(e.value)


def test_blocking_call_must_return_on_time() -> None:
    text = GOOD.replace("+0 write(4, ..., 100) = 100\n+0 > P. 1:101(100) ack 1\n"
                        "+.1 < . 1:1(0) ack 101 win 257\n",
                        "+0...0.5 read(4, ..., 100) = 10\n+.2 < P. 1:11(10) ack 1 win 257\n")
    with pytest.raises(ScriptFailure) as e:
        run(text)
    assert "returned at 0.300" in str(e.value) and e.value.line == 8


@pytest.mark.parametrize("text,line", [
    ("socket(..., SOCK_STREAM, IPPROTO_TCP) = 3", 1),
    ("0 < S 0:5(0) win 1", 1),
    ("0 < S 0:0(0) win 1 <mss>", 1),
    ("0 < S 0:0(0) win 1 <mss 5", 1),
    ("0 < S 0:0(0) window 1", 1),
    ("\n\n0 close(3) = -1", 3),
    ("0 close(3 = 0", 1),
    ("0 `sysctl x", 1),
    ("0 frobnicate", 1),
])
def test_syntax_errors_name_their_line(text: str, line: int) -> None:
    with pytest.raises(ScriptError) as e:
        parse_script(text, "bad.pkt")
    assert e.value.line == line and str(e.value).startswith(f"bad.pkt:{line}:")


def test_comments_options_and_expressions() -> None:
    s = parse_script("--tolerance_usecs=10000\n/* a\nb */ 0 poll([{fd=3, events=POLLIN|POLLOUT,"
                     " revents=0}], 1, -1) = 0 // c\n", "x")
    assert s.options == {"tolerance_usecs": 10000}
    (ev,) = s.events
    assert ev.line == 3 and ev.syscall.name == "poll"
    fds = ev.syscall.args[0]
    assert fds[0]["fd"] == 3 and fds[0]["events"].names == ("POLLIN", "POLLOUT")
    assert ev.syscall.args[2] == -1


def test_unknown_sysctl_and_command_fail() -> None:
    with pytest.raises(ScriptFailure, match="unknown sysctl"):
        run("0 `sysctl net.ipv4.tcp_sack=0`\n")
    with pytest.raises(ScriptFailure, match="unsupported command"):
        run("0 `rm -rf /`\n")
