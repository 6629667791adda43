"""Names shared by the bench CLI and the runner (no heavy imports: the CLI builds its parser
without loading torch or DALI)."""

STAGES = ("read", "decode", "resize", "loader", "baseline", "model", "ttfb", "tune", "ops", "backends", "memory")
DEFAULT_STAGES = ("backends", "read", "decode", "resize", "loader", "baseline", "memory", "ttfb")
PARITY = ("both", "on", "off")
