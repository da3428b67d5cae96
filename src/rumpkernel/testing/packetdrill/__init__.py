"""A packetdrill-style TCP script runner (docs/packetdrill.md).

Interface:
    parse_script(text, name) -> Script           (parser.py)
    run_script(script, target) -> RunResult      (runner.py; ScriptFailure on a mismatch)
    run_file(path, target_factory=EngineTarget)
    EngineTarget(seed, config)                   (target.py: the engine behind a minimal
                                                  socket adapter, on a virtual clock)

A target is anything with the small interface in target.py (inject a segment, collect sent
segments, run a system call, advance time); the socket layer's kernel target plugs in there.
"""

from rumpkernel.testing.packetdrill.parser import ScriptError, parse_script
from rumpkernel.testing.packetdrill.runner import ScriptFailure, run_file, run_script
from rumpkernel.testing.packetdrill.target import EngineTarget

__all__ = ["EngineTarget", "ScriptError", "ScriptFailure", "parse_script", "run_file",
           "run_script"]
