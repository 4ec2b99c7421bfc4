"""effvit-nas."""
