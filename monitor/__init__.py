"""monitor: classify streaming financial text, evaluate alert rules and manage the alert lifecycle."""
