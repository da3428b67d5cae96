"""The TCP state machine of RFC 9293 (Figure 5) as data.

Interface:
    TcpState                   -- IntEnum of the eleven states.
    TcpEvent                   -- what moves a connection: user calls, segments, timers.
    TRANSITIONS                -- {(state, event): next_state}: the only legal moves.
    next_state(state, event)   -- lookup; TcpFsmError (a bug, never peer-triggerable) if illegal.
    SYNCHRONIZED, DATA_RECEIVING, DATA_SENDING -- state sets used by input processing.

A FIN that also acknowledges our FIN in FIN_WAIT_1 is processed ACK first (RFC 9293 3.10.7.4
fifth step before the eighth), so it passes through FIN_WAIT_2 to TIME_WAIT.

Rules: the engine changes ``conn.state`` only through next_state(), so this table is the whole
truth about which moves exist; docs/tcp.md renders it and the packetdrill suite is checked to
exercise every entry.
"""

from __future__ import annotations

import enum


class TcpState(enum.IntEnum):
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    CLOSE_WAIT = 5
    FIN_WAIT_1 = 6
    CLOSING = 7
    LAST_ACK = 8
    FIN_WAIT_2 = 9
    TIME_WAIT = 10


class TcpEvent(enum.Enum):
    ACTIVE_OPEN = "connect"
    PASSIVE_OPEN = "listen"
    RCV_SYN = "rcv SYN"                  # simultaneous open (SYN_SENT) / listener
    RCV_SYN_ACK = "rcv SYN,ACK"          # our SYN acked, theirs received
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    CLOSE = "close"                      # user close / shutdown(SHUT_WR)
    RCV_FIN = "rcv FIN"
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    RCV_RST = "rcv RST"
    TIMEOUT = "timeout"                  # 2MSL, FIN_WAIT_2, retransmission or keepalive limit
    ABORT = "abort"                      # user abort / linger 0


S, E = TcpState, TcpEvent

TRANSITIONS: dict[tuple[TcpState, TcpEvent], TcpState] = {
    (S.CLOSED, E.ACTIVE_OPEN): S.SYN_SENT,
    (S.CLOSED, E.PASSIVE_OPEN): S.LISTEN,
    (S.LISTEN, E.RCV_SYN): S.SYN_RECEIVED,
    (S.LISTEN, E.CLOSE): S.CLOSED,
    (S.SYN_SENT, E.RCV_SYN): S.SYN_RECEIVED,
    (S.SYN_SENT, E.RCV_SYN_ACK): S.ESTABLISHED,
    (S.SYN_SENT, E.CLOSE): S.CLOSED,
    (S.SYN_SENT, E.RCV_RST): S.CLOSED,
    (S.SYN_SENT, E.TIMEOUT): S.CLOSED,
    (S.SYN_SENT, E.ABORT): S.CLOSED,
    (S.SYN_RECEIVED, E.RCV_ACK_OF_SYN): S.ESTABLISHED,
    (S.SYN_RECEIVED, E.CLOSE): S.FIN_WAIT_1,
    (S.SYN_RECEIVED, E.RCV_RST): S.CLOSED,
    (S.SYN_RECEIVED, E.TIMEOUT): S.CLOSED,
    (S.SYN_RECEIVED, E.ABORT): S.CLOSED,
    (S.ESTABLISHED, E.CLOSE): S.FIN_WAIT_1,
    (S.ESTABLISHED, E.RCV_FIN): S.CLOSE_WAIT,
    (S.ESTABLISHED, E.RCV_RST): S.CLOSED,
    (S.ESTABLISHED, E.TIMEOUT): S.CLOSED,
    (S.ESTABLISHED, E.ABORT): S.CLOSED,
    (S.CLOSE_WAIT, E.CLOSE): S.LAST_ACK,
    (S.CLOSE_WAIT, E.RCV_RST): S.CLOSED,
    (S.CLOSE_WAIT, E.TIMEOUT): S.CLOSED,
    (S.CLOSE_WAIT, E.ABORT): S.CLOSED,
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, E.RCV_FIN): S.CLOSING,
    (S.FIN_WAIT_1, E.RCV_RST): S.CLOSED,
    (S.FIN_WAIT_1, E.TIMEOUT): S.CLOSED,
    (S.FIN_WAIT_1, E.ABORT): S.CLOSED,
    (S.FIN_WAIT_2, E.RCV_FIN): S.TIME_WAIT,
    (S.FIN_WAIT_2, E.RCV_RST): S.CLOSED,
    (S.FIN_WAIT_2, E.TIMEOUT): S.CLOSED,
    (S.FIN_WAIT_2, E.ABORT): S.CLOSED,
    (S.CLOSING, E.RCV_ACK_OF_FIN): S.TIME_WAIT,
    (S.CLOSING, E.RCV_RST): S.CLOSED,
    (S.CLOSING, E.TIMEOUT): S.CLOSED,
    (S.CLOSING, E.ABORT): S.CLOSED,
    (S.LAST_ACK, E.RCV_ACK_OF_FIN): S.CLOSED,
    (S.LAST_ACK, E.RCV_RST): S.CLOSED,
    (S.LAST_ACK, E.TIMEOUT): S.CLOSED,
    (S.LAST_ACK, E.ABORT): S.CLOSED,
    (S.TIME_WAIT, E.TIMEOUT): S.CLOSED,
    (S.TIME_WAIT, E.RCV_RST): S.CLOSED,
    (S.TIME_WAIT, E.ABORT): S.CLOSED,
}
del S, E

SYNCHRONIZED = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2,
                          TcpState.CLOSE_WAIT, TcpState.CLOSING, TcpState.LAST_ACK,
                          TcpState.TIME_WAIT})
# states in which arriving data is delivered to the user
DATA_RECEIVING = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2})
# states in which the user may queue data
DATA_SENDING = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})


class TcpFsmError(AssertionError):
    """An illegal transition: a bug in the engine (a peer can never cause it)."""


def next_state(state: TcpState, event: TcpEvent) -> TcpState:
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise TcpFsmError(f"illegal TCP transition {state.name} --{event.value}-->") from None


def render_table() -> str:
    """The table as Markdown rows (docs/tcp.md embeds this)."""
    lines = ["| state | event | next state |", "|---|---|---|"]
    for (state, event), nxt in TRANSITIONS.items():
        lines.append(f"| {state.name} | {event.value} | {nxt.name} |")
    return "\n".join(lines)
