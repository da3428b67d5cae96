"""Internet protocol engines: sans-IO cores (bytes, time, randomness in; output, timers out)."""
