"""The names of the files and folders in a run folder (runs/<id>/...), in one place for the modules
that read or write them."""

EVENTS_FILE = "events.jsonl"  # the trainer's record of the run: studio.runs.events
PROFILE_FILE = "profile.toml"
ORIGINAL_PROFILE = "profile.orig.toml"  # the profile as first started, kept once when a fix revises the run
PLAN_FILE = "plan.json"
LAYOUT_FILE = "launch.json"
ACCELERATE_CONFIG = "accelerate_config.yaml"
STATUS_FILE = "status.json"
SLURM_SCRIPT = "slurm.sbatch"  # `studio run --slurm`: the job script as submitted
LOCK_FILE = "run.lock"  # held by whoever starts the trainer, then by the trainer for its life (runs/lock.py)
LOG_FILE = "trainer.log"
PREFLIGHT_FILE = "preflight.json"
NOTE_FILE = "note.txt"  # the user's own note on the run (`studio note`, t in the app)
EVAL_FILE = "eval.json"  # `studio eval`: the base and the tuned model on the run's eval rows
CHECKPOINTS = "checkpoints"
FINAL = "final"
CHATS = "chats"        # chat transcripts
CHAT_LOG = "chat.log"  # the generation process's output
BASE_MODEL = "base-model"  # the built-in tiny model or a probe's random one, written inside the run
EXPORT_MARKER = ".studio-export.json"  # in every export folder: --force replaces a folder only when it holds one
