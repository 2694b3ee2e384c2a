"""The generation process: `python -m studio.generate RUN_DIR` loads a run's model once and
answers prompts sent as JSON lines, streaming tokens back (studio.runs.chat is its client).

Like studio.trainer, it imports torch and transformers; importing the package imports neither.
"""
