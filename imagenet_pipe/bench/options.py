"""Names shared by the bench CLI and the runner (no heavy imports: the CLI builds its parser
without loading torch or DALI)."""

STAGES = ("read", "decode", "resize", "loader", "baseline", "model", "ttfb", "tune", "ops")
DEFAULT_STAGES = ("read", "decode", "resize", "loader", "baseline", "ttfb")
PARITY = ("both", "on", "off")
