"""haste: the background-job and automation engine of hasteCRM."""

__version__ = "0.1.0"
