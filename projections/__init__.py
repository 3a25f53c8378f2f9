"""eventmail's read side: pure folds from the event log to spools and indexes."""
