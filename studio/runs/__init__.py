"""Runs: the run folder (folder.py), its event log (events.py), whether its trainer
lives (liveness.py) and what state it is in (state.py), starting and stopping it
(start.py, launcher.py), and what finished runs measured (history.py)."""
