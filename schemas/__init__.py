"""Package data: SQL migrations (``sql/``) and JSON Schemas, shipped with the wheel."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
SQL_DIR = ROOT / "sql"
